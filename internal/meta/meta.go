// Package meta reads and writes the host-owned meta tables of SPEC:
// pack_settings and schema_registry. The host creates them; packs read and
// write their own rows through the SDK.
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
type Setting struct {
	PackID    string    `gorm:"column:pack_id;primaryKey;size:64"`
	Key       string    `gorm:"column:key;primaryKey;size:255"`
	Value     string    `gorm:"column:value;not null"`
	UpdatedAt time.Time `gorm:"column:updated_at;not null"`
}

// TableName implements gorm's Tabler.
func (Setting) TableName() string { return SettingsTable }

// Registration is one row of schema_registry: the canonical schema text of a
// table at a version, as installed on this database.
type Registration struct {
	TableName_   string    `gorm:"column:table_name;primaryKey;size:255"`
	TableVersion int       `gorm:"column:table_version;primaryKey;autoIncrement:false"`
	PackID       string    `gorm:"column:pack_id;not null;size:64"`
	SchemaText   string    `gorm:"column:schema_text;not null"`
	CreatedAt    time.Time `gorm:"column:created_at;not null"`
}

// TableName implements gorm's Tabler.
func (Registration) TableName() string { return RegistryTable }

// Ensure creates the meta tables when they are missing.
// Hosts starting together on one database take turns: on PostgreSQL
// through a transaction-scoped advisory lock, on SQLite through the
// write lock of the transaction itself.
func Ensure(ctx context.Context, db *gorm.DB) error {
	err := db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		if tx.Dialector.Name() == "postgres" {
			if err := tx.Exec("SELECT pg_advisory_xact_lock(?)", ensureLockKey).Error; err != nil {
				return err
			}
		}
		return tx.AutoMigrate(&Setting{}, &Registration{})
	})
	if err != nil {
		return fmt.Errorf("create meta tables: %w", err)
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
func Registered(ctx context.Context, db *gorm.DB, table string) (map[int]Registration, error) {
	out := map[int]Registration{}
	if !Present(ctx, db) {
		return out, nil
	}
	var rows []Registration
	if err := db.WithContext(ctx).Where("table_name = ?", table).Find(&rows).Error; err != nil {
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
		Columns:   []clause.Column{{Name: "table_name"}, {Name: "table_version"}},
		DoUpdates: clause.AssignmentColumns([]string{"pack_id", "schema_text", "created_at"}),
	}).Create(&r).Error
	if err != nil {
		return fmt.Errorf("register schema of %s v%d: %w", table, version, err)
	}
	return nil
}

// IsMetaTable reports whether name is one of the host's meta tables, which
// no pack may declare.
func IsMetaTable(name string) bool { return name == SettingsTable || name == RegistryTable }
