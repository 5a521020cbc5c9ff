package dbtest

import (
	"os"
	"strings"
	"testing"

	"gorm.io/gorm"

	"github.com/packhost/packhost/internal/dbconn"
)

type note struct {
	ID   int64 `gorm:"primaryKey"`
	Text string
}

func TestForEachGivesAWorkingDatabase(t *testing.T) {
	ForEach(t, func(t *testing.T, db DB) {
		t.Parallel()
		if want := strings.TrimPrefix(t.Name(), "TestForEachGivesAWorkingDatabase/on_"); db.Name != want {
			t.Errorf("db.Name = %q, want %q", db.Name, want)
		}
		if db.Target.Driver != db.Name {
			t.Errorf("db.Target.Driver = %q, want %q", db.Target.Driver, db.Name)
		}
		if err := db.Gorm.Exec("CREATE TABLE notes (id integer PRIMARY KEY, text varchar(100) NOT NULL)").Error; err != nil {
			t.Fatalf("create table: %v", err)
		}
		if err := db.Gorm.Exec("INSERT INTO notes (id, text) VALUES (?, ?), (?, ?)", 1, "one", 2, "two").Error; err != nil {
			t.Fatalf("insert: %v", err)
		}
		var got []note
		if err := db.Gorm.Order("id").Find(&got).Error; err != nil {
			t.Fatalf("select: %v", err)
		}
		if len(got) != 2 || got[0] != (note{1, "one"}) || got[1] != (note{2, "two"}) {
			t.Errorf("read back %+v, want [{1 one} {2 two}]", got)
		}

		// The Target reaches the same database from a second connection,
		// as a pack process would.
		other, err := dbconn.Open(db.Target)
		if err != nil {
			t.Fatalf("open target: %v", err)
		}
		defer dbconn.Close(other)
		var n int64
		if err := other.Table("notes").Count(&n).Error; err != nil {
			t.Fatalf("count through target: %v", err)
		}
		if n != 2 {
			t.Errorf("count through target = %d, want 2", n)
		}
	})
}

func TestTwoCallsGiveIsolatedDatabases(t *testing.T) {
	for _, tc := range []struct {
		name string
		make func(testing.TB) DB
	}{
		{"on sqlite", SQLite},
		{"on postgres", Postgres},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			a, b := tc.make(t), tc.make(t)
			if a.Target.DSN == b.Target.DSN {
				t.Fatalf("both databases have DSN %q", a.Target.DSN)
			}
			if err := a.Gorm.Exec("CREATE TABLE only_in_a (id integer)").Error; err != nil {
				t.Fatalf("create table in a: %v", err)
			}
			if !a.Gorm.Migrator().HasTable("only_in_a") {
				t.Fatalf("a does not see its own table")
			}
			if b.Gorm.Migrator().HasTable("only_in_a") {
				t.Errorf("b sees the table created in a")
			}
			// b is empty: a fresh database has no tables at all.
			tables, err := b.Gorm.Migrator().GetTables()
			if err != nil {
				t.Fatalf("list tables of b: %v", err)
			}
			if len(tables) != 0 {
				t.Errorf("b has tables %v, want none", tables)
			}
		})
	}
}

func TestPostgresDropsTheDatabaseAtCleanup(t *testing.T) {
	if os.Getenv(EnvPGDSN) == "" && os.Getenv(EnvRequirePG) != "1" {
		t.Skipf("%s not set", EnvPGDSN)
	}
	var name string
	var leaked *gorm.DB
	t.Cleanup(func() { _ = dbconn.Close(leaked) })
	t.Run("make a database and leave a connection open", func(t *testing.T) {
		db := Postgres(t)
		if err := db.Gorm.Raw("SELECT current_database()").Scan(&name).Error; err != nil {
			t.Fatalf("current_database: %v", err)
		}
		if !strings.HasPrefix(name, "t_") {
			t.Errorf("database name %q, want a t_ prefix", name)
		}
		// A connection a pack forgot to close must not keep the database
		// alive. It is closed only when the parent test ends, after the drop.
		var err error
		leaked, err = dbconn.Open(db.Target)
		if err != nil {
			t.Fatalf("open target: %v", err)
		}
		if err := leaked.Exec("SELECT 1").Error; err != nil {
			t.Fatalf("use leaked connection: %v", err)
		}
	})
	if name == "" {
		t.FailNow()
	}
	admin, err := adminDB(os.Getenv(EnvPGDSN))
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	if err := admin.Raw("SELECT count(*) FROM pg_database WHERE datname = ?", name).Scan(&n).Error; err != nil {
		t.Fatalf("look for database %s: %v", name, err)
	}
	if n != 0 {
		t.Errorf("database %s still exists after the test ended", name)
	}
}

func TestWithDatabase(t *testing.T) {
	for _, tc := range []struct {
		in, want string
	}{
		{"postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable", "postgres://postgres@127.0.0.1:5432/t_x?sslmode=disable"},
		{"postgresql://u:p@h/", "postgresql://u:p@h/t_x"},
		{"postgres://u@h/db?dbname=other&sslmode=disable", "postgres://u@h/t_x?sslmode=disable"},
	} {
		got, err := withDatabase(tc.in, "t_x")
		if err != nil {
			t.Errorf("withDatabase(%q): %v", tc.in, err)
			continue
		}
		if got != tc.want {
			t.Errorf("withDatabase(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
	if _, err := withDatabase("host=h dbname=x", "t_x"); err == nil || !strings.Contains(err.Error(), "expected a postgres:// URL") {
		t.Errorf("withDatabase of a key=value DSN: err = %v, want one asking for a postgres:// URL", err)
	}
}
