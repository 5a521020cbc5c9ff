// Package meta reads and writes the host-owned meta tables of SPEC:
// pack_settings and schema_registry. It is the only code that writes them:
// the pack runtime (internal/packrt) records versions and schemas through
// it inside each step's transaction, restores a backup's rows through it,
// and the installer (host/install) puts a new pack's rows back through it.
package meta

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"
)

// Table names are part of the contract.
const (
	SettingsTable = "pack_settings"
	RegistryTable = "schema_registry"
)

// VersionKeyPrefix prefixes the pack_settings key that holds a table's
// installed schema version: schema_version:<table>.
const VersionKeyPrefix = "schema_version:"

// Setting is one row of pack_settings.
// Its JSON form (the journal's) is stable: renaming a Go field must not
// change it.
type Setting struct {
	PackID    string    `gorm:"column:pack_id;primaryKey;size:64" json:"pack_id"`
	Key       string    `gorm:"column:key;primaryKey;size:255" json:"key"`
	Value     string    `gorm:"column:value;not null" json:"value"`
	UpdatedAt time.Time `gorm:"column:updated_at;not null" json:"updated_at"`
}

// TableName implements gorm's Tabler.
func (Setting) TableName() string { return SettingsTable }

// Registration is one row of schema_registry: the canonical schema text of a
// table at a version, as installed on this database.
// Its JSON form is stable, as Setting's.
type Registration struct {
	PackID       string    `gorm:"column:pack_id;primaryKey;size:64" json:"pack_id"`
	TableName_   string    `gorm:"column:table_name;primaryKey;size:255" json:"table_name"`
	TableVersion int       `gorm:"column:table_version;primaryKey;autoIncrement:false" json:"table_version"`
	SchemaText   string    `gorm:"column:schema_text;not null" json:"schema_text"`
	CreatedAt    time.Time `gorm:"column:created_at;not null" json:"created_at"`
}

// TableName implements gorm's Tabler.
func (Registration) TableName() string { return RegistryTable }

// Version is the meta tables' own version, recorded in pack_settings
// under the pack id HostID (which no pack can have) and the key
// VersionKey(RegistryTable). Version 1 keyed schema_registry by table and
// version only; version 2 keys it by pack, table and version, so that two
// packs' tables of one name never share registry rows.
const Version = 2

// HostID is the pack_settings pack id of the host's own settings: not a
// pack id (those start with a letter or digit).
const HostID = "_host"

// Ensure creates the meta tables when they are missing and brings them to
// Version. Hosts starting together on one database take turns: on
// PostgreSQL through a transaction-scoped advisory lock, on SQLite through
// the write lock of the transaction itself. Meta tables newer than this
// host knows are refused: an older host must not write them.
func Ensure(ctx context.Context, db *gorm.DB) error {
	err := db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		if tx.Dialector.Name() == "postgres" {
			if err := tx.Exec("SELECT pg_advisory_xact_lock(?)", ensureLockKey).Error; err != nil {
				return err
			}
		}
		existed := Present(ctx, tx)
		if err := tx.AutoMigrate(&Setting{}, &Registration{}); err != nil {
			return err
		}
		v, err := InstalledVersion(ctx, tx, HostID, RegistryTable)
		if err != nil {
			return err
		}
		if v == 0 && existed {
			v = 1 // made before the meta tables had a version
		}
		switch {
		case v > Version:
			return fmt.Errorf("the meta tables are at version %d, newer than this host knows (%d): this database was used by a newer host; run that host, or upgrade this one", v, Version)
		case v == 1:
			if err := keyRegistryByPack(tx); err != nil {
				return fmt.Errorf("key schema_registry by pack: %w", err)
			}
		}
		if v != Version {
			return SetVersion(ctx, tx, HostID, RegistryTable, Version)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("create meta tables: %w", err)
	}
	return nil
}

// keyRegistryByPack takes schema_registry from version 1 (primary key
// table_name, table_version) to 2 (pack_id, table_name, table_version),
// keeping every row.
func keyRegistryByPack(tx *gorm.DB) error {
	if tx.Dialector.Name() == "postgres" {
		var name string
		if err := tx.Raw(`SELECT conname FROM pg_constraint WHERE conrelid = 'schema_registry'::regclass AND contype = 'p'`).Scan(&name).Error; err != nil {
			return err
		}
		if name != "" {
			if err := tx.Exec(`ALTER TABLE schema_registry DROP CONSTRAINT ` + `"` + strings.ReplaceAll(name, `"`, `""`) + `"`).Error; err != nil {
				return err
			}
		}
		return tx.Exec(`ALTER TABLE schema_registry ADD PRIMARY KEY (pack_id, table_name, table_version)`).Error
	}
	for _, stmt := range []string{
		`CREATE TABLE schema_registry_v2 (
			pack_id text NOT NULL, table_name text NOT NULL, table_version integer NOT NULL,
			schema_text text NOT NULL, created_at datetime NOT NULL,
			PRIMARY KEY (pack_id, table_name, table_version))`,
		`INSERT INTO schema_registry_v2 (pack_id, table_name, table_version, schema_text, created_at)
			SELECT pack_id, table_name, table_version, schema_text, created_at FROM schema_registry`,
		`DROP TABLE schema_registry`,
		`ALTER TABLE schema_registry_v2 RENAME TO schema_registry`,
	} {
		if err := tx.Exec(stmt).Error; err != nil {
			return err
		}
	}
	return nil
}

// ensureLockKey serialises Ensure across hosts ("pkhostmt" in ASCII).
const ensureLockKey int64 = 0x706b686f73746d74

// Present reports whether both meta tables exist.
func Present(ctx context.Context, db *gorm.DB) bool {
	m := db.WithContext(ctx).Migrator()
	return m.HasTable(SettingsTable) && m.HasTable(RegistryTable)
}

// VersionKey is the pack_settings key of table's version.
func VersionKey(table string) string { return VersionKeyPrefix + table }

// InstalledVersion returns the installed version of table (0 when none is
// recorded, or when the meta tables do not exist yet).
func InstalledVersion(ctx context.Context, db *gorm.DB, packID, table string) (int, error) {
	if !Present(ctx, db) {
		return 0, nil
	}
	var s Setting
	err := db.WithContext(ctx).Where("pack_id = ? AND key = ?", packID, VersionKey(table)).Take(&s).Error
	if errors.Is(err, gorm.ErrRecordNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("read %s version: %w", table, err)
	}
	v, err := strconv.Atoi(strings.TrimSpace(s.Value))
	if err != nil || v < 0 {
		return 0, fmt.Errorf("read %s version: pack_settings holds %q for %s, not a version number", table, s.Value, VersionKey(table))
	}
	return v, nil
}

// SetVersion records table's installed version.
func SetVersion(ctx context.Context, tx *gorm.DB, packID, table string, version int) error {
	return SetSetting(ctx, tx, packID, VersionKey(table), strconv.Itoa(version))
}

// SetSetting writes one pack setting.
func SetSetting(ctx context.Context, tx *gorm.DB, packID, key, value string) error {
	s := Setting{PackID: packID, Key: key, Value: value, UpdatedAt: time.Now().UTC()}
	err := tx.WithContext(ctx).Clauses(clause.OnConflict{
		Columns:   []clause.Column{{Name: "pack_id"}, {Name: "key"}},
		DoUpdates: clause.AssignmentColumns([]string{"value", "updated_at"}),
	}).Create(&s).Error
	if err != nil {
		return fmt.Errorf("write pack setting %s/%s: %w", packID, key, err)
	}
	return nil
}

// Registered returns the registered schema texts of table by version.
func Registered(ctx context.Context, db *gorm.DB, packID, table string) (map[int]Registration, error) {
	out := map[int]Registration{}
	if !Present(ctx, db) {
		return out, nil
	}
	var rows []Registration
	if err := db.WithContext(ctx).Where("pack_id = ? AND table_name = ?", packID, table).Find(&rows).Error; err != nil {
		return nil, fmt.Errorf("read schema registry of %s: %w", table, err)
	}
	for _, r := range rows {
		out[r.TableVersion] = r
	}
	return out, nil
}

// Register records the schema text of table at version. An existing row for
// the same table and version is replaced: the latest install of a version
// on this database is the one its live table is checked against.
func Register(ctx context.Context, tx *gorm.DB, packID, table string, version int, text string) error {
	r := Registration{TableName_: table, TableVersion: version, PackID: packID, SchemaText: text, CreatedAt: time.Now().UTC()}
	err := tx.WithContext(ctx).Clauses(clause.OnConflict{
		Columns:   []clause.Column{{Name: "pack_id"}, {Name: "table_name"}, {Name: "table_version"}},
		DoUpdates: clause.AssignmentColumns([]string{"schema_text", "created_at"}),
	}).Create(&r).Error
	if err != nil {
		return fmt.Errorf("register schema of %s v%d: %w", table, version, err)
	}
	return nil
}

// IsMetaTable reports whether name is one of the host's meta tables, which
// no pack may declare.
func IsMetaTable(name string) bool { return name == SettingsTable || name == RegistryTable }

// PackSettings returns the pack's pack_settings rows, by key (none when the
// meta tables do not exist yet).
func PackSettings(ctx context.Context, db *gorm.DB, packID string) ([]Setting, error) {
	var out []Setting
	if !Present(ctx, db) {
		return out, nil
	}
	if err := db.WithContext(ctx).Where("pack_id = ?", packID).Order("key").Find(&out).Error; err != nil {
		return nil, fmt.Errorf("read pack_settings of %s: %w", packID, err)
	}
	return out, nil
}

// Registrations returns the schema_registry rows of the tables, by table
// and version.
func Registrations(ctx context.Context, db *gorm.DB, packID string, tables []string) ([]Registration, error) {
	var out []Registration
	if len(tables) == 0 || !Present(ctx, db) {
		return out, nil
	}
	if err := db.WithContext(ctx).Where("pack_id = ? AND table_name IN ?", packID, tables).Order("table_name, table_version").Find(&out).Error; err != nil {
		return nil, fmt.Errorf("read schema_registry: %w", err)
	}
	return out, nil
}

// Keys says which of a pack's pack_settings rows a replacement covers:
// every key but Except, or, when Only is not nil, just Only.
type Keys struct {
	Only   []string
	Except []string
}

// ReplaceSettings replaces the pack's pack_settings rows that keys covers
// with rows (which must be the pack's and covered by keys), in tx.
func ReplaceSettings(ctx context.Context, tx *gorm.DB, packID string, keys Keys, rows []Setting) error {
	del := tx.WithContext(ctx).Where("pack_id = ?", packID)
	switch {
	case keys.Only != nil && len(keys.Only) == 0:
		del = nil
	case keys.Only != nil:
		del = del.Where("key IN ?", keys.Only)
	case len(keys.Except) > 0:
		del = del.Where("key NOT IN ?", keys.Except)
	}
	if del != nil {
		if err := del.Delete(&Setting{}).Error; err != nil {
			return fmt.Errorf("clear pack_settings of %s: %w", packID, err)
		}
	}
	for _, r := range rows {
		if r.PackID != packID {
			return fmt.Errorf("put back pack_settings of %s: a row of pack %q", packID, r.PackID)
		}
		row := r
		if err := tx.WithContext(ctx).Create(&row).Error; err != nil {
			return fmt.Errorf("put back pack setting %s/%s: %w", packID, r.Key, err)
		}
	}
	return nil
}

// ReplaceRegistrations replaces the schema_registry rows of the tables
// with rows, in tx.
func ReplaceRegistrations(ctx context.Context, tx *gorm.DB, packID string, tables []string, rows []Registration) error {
	if len(tables) > 0 {
		if err := tx.WithContext(ctx).Where("pack_id = ? AND table_name IN ?", packID, tables).Delete(&Registration{}).Error; err != nil {
			return fmt.Errorf("clear schema_registry of %s: %w", strings.Join(tables, ", "), err)
		}
	}
	for _, r := range rows {
		if r.PackID != packID {
			return fmt.Errorf("put back schema_registry of %s: a row of pack %q", packID, r.PackID)
		}
		row := r
		if err := tx.WithContext(ctx).Create(&row).Error; err != nil {
			return fmt.Errorf("put back schema_registry row %s v%d: %w", r.TableName_, r.TableVersion, err)
		}
	}
	return nil
}
