package update

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"
	"gorm.io/gorm"

	"github.com/packhost/packhost/host/backup"
	"github.com/packhost/packhost/host/dbupdate"
	"github.com/packhost/packhost/host/packs"
	"github.com/packhost/packhost/internal/dbconn"
	"github.com/packhost/packhost/internal/packpb"
)

// PackDB is DBSteps through the packs' own Backup, Restore and Upgrade
// RPCs: each pack's backup goes to Updates_Backups/db-<ts>-<id>/ (made by
// host/backup, so a failed backup leaves nothing under a backup's name),
// and the token is <ts>. Upgrades hold the database-wide upgrade lock when
// Target and DB are set.
type PackDB struct {
	Root string
	Log  hclog.Logger
	Now  func() time.Time
	// Target and DB reach the database for the upgrade lock.
	Target dbconn.Target
	DB     *gorm.DB
}

func (d PackDB) log() hclog.Logger {
	if d.Log == nil {
		return hclog.NewNullLogger()
	}
	return d.Log
}

func findPack(running []*packs.Pack, id string) (*packs.Pack, error) {
	for _, p := range running {
		if p.ID == id {
			return p, nil
		}
	}
	return nil, fmt.Errorf("pack %s is not running", id)
}

// Backup implements DBSteps.
func (d PackDB) Backup(ctx context.Context, running []*packs.Pack, ids []string) (string, error) {
	now := time.Now
	if d.Now != nil {
		now = d.Now
	}
	t := now().UTC()
	var list []*packs.Pack
	for _, id := range ids {
		p, err := findPack(running, id)
		if err != nil {
			return "", fmt.Errorf("back up %s: %w", id, err)
		}
		list = append(list, p)
	}
	_, err := backup.Packs(ctx, filepath.Join(d.Root, BackupsDir), list, t, func(id string, ev *packpb.Progress) {
		d.log().Debug("backup", "pack", id, "table", ev.Table, "message", ev.Message)
	})
	if err != nil {
		return "", err
	}
	return t.Format(backup.StampLayout), nil
}

// Upgrade implements DBSteps.
func (d PackDB) Upgrade(ctx context.Context, running []*packs.Pack, ids []string) error {
	if d.DB != nil {
		unlock, err := dbupdate.Lock(ctx, d.Target, d.DB, func() {
			d.log().Info("another host is upgrading this database; waiting for it to finish")
		})
		if err != nil {
			return err
		}
		defer unlock()
	}
	which := map[string]bool{}
	for _, id := range ids {
		which[id] = true
	}
	ordered, err := dbupdate.Order(running)
	if err != nil {
		return err
	}
	// One pack at a time, so that a crash between two packs' upgrades can
	// be injected (each pack's steps commit on their own).
	n := 0
	for _, p := range ordered {
		if !which[p.ID] {
			continue
		}
		if n > 0 {
			crashPoint(CrashBetweenPackUpgrades)
		}
		n++
		err := dbupdate.Upgrade(ctx, running, map[string]bool{p.ID: true}, func(id string, ev *packpb.Progress) {
			if ev.Done {
				d.log().Info("upgrade done", "pack", id, "message", ev.Message)
				return
			}
			d.log().Info("upgrading", "pack", id, "table", ev.Table, "from", ev.From, "to", ev.To, "step", ev.Message)
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// Restore implements DBSteps.
func (d PackDB) Restore(ctx context.Context, running []*packs.Pack, token string) error {
	dirs, err := filepath.Glob(filepath.Join(d.Root, BackupsDir, backup.Prefix+token+"-*"))
	if err != nil {
		return err
	}
	for _, dir := range dirs {
		id := strings.TrimPrefix(filepath.Base(dir), backup.Prefix+token+"-")
		if _, err := findPack(running, id); err != nil {
			return fmt.Errorf("restore %s: %w", dir, err)
		}
		if _, err := backup.Restore(ctx, running, dir, false, nil); err != nil {
			return fmt.Errorf("restore the tables of %s from %s: %w", id, dir, err)
		}
	}
	return nil
}
