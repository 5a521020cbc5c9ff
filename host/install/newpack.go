package install

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"

	"github.com/packhost/packhost/host/packroles"
	"github.com/packhost/packhost/host/recovery"
	"github.com/packhost/packhost/internal/meta"
	"github.com/packhost/packhost/internal/schema"
)

// RecordNew implements DBSteps through the host's own connection.
func (d PackDB) RecordNew(ctx context.Context, id string, tables []string, replaced bool) (*recovery.NewPackDB, error) {
	if d.DB == nil {
		return nil, errors.New("record the database before installing " + id + ": no database connection")
	}
	rec, err := recordNewPack(ctx, d.DB, id, tables, replaced)
	if err != nil {
		return nil, fmt.Errorf("record the database before installing %s: %w", id, err)
	}
	return rec, nil
}

// DropNew implements DBSteps through the host's own connection (the
// caller holds the database lock).
func (d PackDB) DropNew(ctx context.Context, id string, rec *recovery.NewPackDB) error {
	if d.DB == nil {
		return errors.New("remove the tables of " + id + ": no database connection")
	}
	if err := dropNewPack(ctx, d.DB, id, rec, packroles.DatabaseName(d.Target), d.Root); err != nil {
		return fmt.Errorf("remove the tables of %s (%s) that the failed install created: %w", id, strings.Join(rec.Created, ", "), err)
	}
	if len(rec.Kept) > 0 && !rec.Replaced {
		d.log().Warn("tables that existed before the install were left as the upgrade made them", "pack", id, "tables", strings.Join(rec.Kept, ", "))
	}
	return nil
}

// recordNewPack reads what db holds of the pack id, which is about to be
// installed (replaced: over an installed version), and of the tables it
// declares.
func recordNewPack(ctx context.Context, db *gorm.DB, id string, tables []string, replaced bool) (*recovery.NewPackDB, error) {
	db = db.WithContext(ctx)
	rec := &recovery.NewPackDB{Created: []string{}, Replaced: replaced}
	for _, t := range tables {
		_, exists, err := schema.Describe(ctx, db, t)
		if err != nil {
			return nil, err
		}
		if exists {
			rec.Kept = append(rec.Kept, t)
		} else {
			rec.Created = append(rec.Created, t)
		}
	}
	if !meta.Present(ctx, db) {
		return rec, nil
	}
	settings, err := meta.PackSettings(ctx, db, id)
	if err != nil {
		return nil, err
	}
	for _, s := range settings {
		if ownsKey(rec, s.Key) {
			rec.Settings = append(rec.Settings, s)
		}
	}
	if rec.Registry, err = meta.Registrations(ctx, db, id, rec.Created); err != nil {
		return nil, err
	}
	return rec, nil
}

func versionKeys(tables []string) []string {
	keys := []string{}
	for _, t := range tables {
		keys = append(keys, meta.VersionKey(t))
	}
	return keys
}

// ownsKey reports whether a rollback puts the pack's setting key back as
// recorded: for a new pack every key but the version keys of Kept tables,
// for a replaced one only the version keys of Created tables (the backup
// has the rest).
func ownsKey(rec *recovery.NewPackDB, key string) bool {
	if rec.Replaced {
		return slices.Contains(versionKeys(rec.Created), key)
	}
	return !slices.Contains(versionKeys(rec.Kept), key)
}

// dropNewPack puts db back as recordNewPack found it, in one transaction:
// it drops the Created tables that exist now, and replaces the pack's
// pack_settings rows that rec owns (see ownsKey) and the schema_registry
// rows of the Created tables with the recorded ones. Run again, it does
// nothing more.
func dropNewPack(ctx context.Context, db *gorm.DB, id string, rec *recovery.NewPackDB, database, system string) error {
	return db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		for _, t := range rec.Created {
			_, exists, err := schema.Describe(ctx, tx, t)
			if err != nil {
				return err
			}
			if !exists {
				continue
			}
			// No CASCADE: an object of another pack that depends on the
			// table stops the rollback instead of being dropped with it.
			if err := tx.Exec("DROP TABLE ?", clause.Table{Name: t}).Error; err != nil {
				return fmt.Errorf("drop table %s: %w", t, err)
			}
		}
		if !meta.Present(ctx, tx) {
			return nil
		}
		keys := meta.Keys{Except: versionKeys(rec.Kept)}
		if rec.Replaced {
			keys = meta.Keys{Only: versionKeys(rec.Created)}
		}
		if err := meta.ReplaceSettings(ctx, tx, id, keys, rec.Settings); err != nil {
			return err
		}
		if err := meta.ReplaceRegistrations(ctx, tx, id, rec.Created, rec.Registry); err != nil {
			return err
		}
		if rec.Replaced {
			return nil
		}
		// A pack the install added to this system: its login role here
		// goes with it (and its owner role, when no other system uses it).
		return packroles.Forget(ctx, tx, database, id, system)
	})
}
