package meta

import (
	"strings"
	"testing"
	"time"

	"github.com/packhost/packhost/internal/dbtest"
)

// TestVersionOneMetaTablesAreKeyedByPack makes the meta tables as the
// first host made them (schema_registry keyed by table and version, no
// version of their own) with rows in them, then Ensure: every row is
// kept, the version is recorded, and two packs may now register a table
// of one name.
func TestVersionOneMetaTablesAreKeyedByPack(t *testing.T) {
	v1 := map[string][]string{
		"sqlite": {
			`CREATE TABLE pack_settings (pack_id text, key text, value text NOT NULL, updated_at datetime NOT NULL, PRIMARY KEY (pack_id, key))`,
			`CREATE TABLE schema_registry (table_name text, table_version integer, pack_id text NOT NULL, schema_text text NOT NULL, created_at datetime NOT NULL, PRIMARY KEY (table_name, table_version))`,
		},
		"postgres": {
			`CREATE TABLE pack_settings (pack_id varchar(64), key varchar(255), value text NOT NULL, updated_at timestamptz NOT NULL, PRIMARY KEY (pack_id, key))`,
			`CREATE TABLE schema_registry (table_name varchar(255), table_version bigint, pack_id varchar(64) NOT NULL, schema_text text NOT NULL, created_at timestamptz NOT NULL, PRIMARY KEY (table_name, table_version))`,
		},
	}
	dbtest.ForEach(t, func(t *testing.T, db dbtest.DB) {
		ctx := t.Context()
		for _, s := range v1[db.Name] {
			if err := db.Gorm.Exec(s).Error; err != nil {
				t.Fatal(err)
			}
		}
		now := time.Now().UTC()
		for _, s := range []string{
			`INSERT INTO pack_settings VALUES ('notes', 'schema_version:notes', '2', ?)`,
			`INSERT INTO schema_registry VALUES ('notes', 1, 'notes', 'table notes v1', ?)`,
			`INSERT INTO schema_registry VALUES ('notes', 2, 'notes', 'table notes v2', ?)`,
		} {
			if err := db.Gorm.Exec(s, now).Error; err != nil {
				t.Fatal(err)
			}
		}
		if err := Ensure(ctx, db.Gorm); err != nil {
			t.Fatal(err)
		}
		if v, err := InstalledVersion(ctx, db.Gorm, HostID, RegistryTable); err != nil || v != Version {
			t.Fatalf("meta version %d (%v), want %d", v, err, Version)
		}
		regs, err := Registered(ctx, db.Gorm, "notes", "notes")
		if err != nil || len(regs) != 2 || regs[2].SchemaText != "table notes v2" {
			t.Fatalf("registrations after the change: %+v (%v)", regs, err)
		}
		if v, _ := InstalledVersion(ctx, db.Gorm, "notes", "notes"); v != 2 {
			t.Errorf("notes version %d after the change, want 2", v)
		}
		// Two packs, one table name: each has its own rows.
		if err := Register(ctx, db.Gorm, "other", "notes", 1, "table notes of other"); err != nil {
			t.Fatalf("a second pack cannot register its own notes: %v", err)
		}
		if regs, _ := Registered(ctx, db.Gorm, "notes", "notes"); regs[1].SchemaText != "table notes v1" {
			t.Errorf("pack notes' registration was replaced by pack other's: %+v", regs[1])
		}
		// Run again, it changes nothing.
		if err := Ensure(ctx, db.Gorm); err != nil {
			t.Fatal(err)
		}
	})
}

func TestMetaTablesOfANewerHostAreRefused(t *testing.T) {
	dbtest.ForEach(t, func(t *testing.T, db dbtest.DB) {
		ctx := t.Context()
		if err := Ensure(ctx, db.Gorm); err != nil {
			t.Fatal(err)
		}
		if err := SetVersion(ctx, db.Gorm, HostID, RegistryTable, Version+1); err != nil {
			t.Fatal(err)
		}
		err := Ensure(ctx, db.Gorm)
		if err == nil || !strings.Contains(err.Error(), "newer than this host knows") {
			t.Fatalf("err = %v", err)
		}
	})
}
