package install

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"
	"gorm.io/gorm"

	"github.com/packhost/packhost/host/backup"
	"github.com/packhost/packhost/host/packs"
	"github.com/packhost/packhost/host/system"
	"github.com/packhost/packhost/host/upgrade"
	"github.com/packhost/packhost/internal/crashpoint"
	"github.com/packhost/packhost/internal/dbconn"
	"github.com/packhost/packhost/internal/naming"
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
	// Roles, when set, fits the packs' database roles to what the running
	// packs declare (host/packroles): after their start and after each
	// pack's upgrade.
	Roles func(ctx context.Context, running []*packs.Pack) error
}

func (d PackDB) log() hclog.Logger {
	if d.Log == nil {
		return hclog.NewNullLogger()
	}
	return d.Log
}

// Backup implements DBSteps. The token lists the backups' directory
// names in Updates_Backups, comma separated.
//
// A replaced pack whose installed version is not running cannot back up
// its tables, and the install stops with what to do. Skipping it, even
// only when it has no tables, would need to know its tables, which only
// the pack that did not start can say; a guess from the meta tables would
// let an install go on without a backup the admin did not give up. With
// --no-backup the admin gives it up knowingly.
func (d PackDB) Backup(ctx context.Context, running []*packs.Pack, ids []string) (string, error) {
	now := time.Now
	if d.Now != nil {
		now = d.Now
	}
	t := now().UTC()
	var list []*packs.Pack
	for _, id := range ids {
		p := findPack(running, id)
		if p == nil {
			return "", notRunning(id)
		}
		list = append(list, p)
	}
	paths, err := backup.Packs(ctx, filepath.Join(d.Root, system.BackupsDir), list, t, func(id string, ev *packpb.Progress) {
		d.log().Debug("backup", "pack", id, "table", ev.Table, "message", ev.Message)
	})
	if err != nil {
		return "", err
	}
	names := make([]string, len(paths))
	for i, p := range paths {
		names[i] = filepath.Base(p)
	}
	return strings.Join(names, ","), nil
}

// notRunning is the error for a replaced pack whose installed version is
// not running, so that its tables cannot be backed up.
func notRunning(id string) error {
	return fmt.Errorf("back up pack %s: its installed version is not running (it did not start; `host status` says why), so its tables cannot be backed up before it is replaced; "+
		"fix it, or pass --no-backup to install over it without a database backup of it", id)
}

// Upgrade implements DBSteps.
func (d PackDB) Upgrade(ctx context.Context, running []*packs.Pack, ids []string) error {
	which := map[string]bool{}
	for _, id := range ids {
		which[id] = true
	}
	ordered, err := upgrade.Order(running)
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
			crashpoint.At(CrashBetweenPackUpgrades)
		}
		n++
		var after func(context.Context) error
		if d.Roles != nil {
			after = func(ctx context.Context) error { return d.Roles(ctx, running) }
		}
		err := upgrade.Packs(ctx, running, map[string]bool{p.ID: true}, func(id string, ev *packpb.Progress) {
			if ev.Done {
				d.log().Info("upgrade done", "pack", id, "message", ev.Message)
				return
			}
			d.log().Info("upgrading", "pack", id, "table", ev.Table, "from", ev.From, "to", ev.To, "step", ev.Message)
		}, after)
		if err != nil {
			return err
		}
	}
	return nil
}

// Restore implements DBSteps: it restores the backups the token names,
// of the packs ids only.
func (d PackDB) Restore(ctx context.Context, running []*packs.Pack, token string, ids []string) error {
	for _, id := range ids {
		dir, err := backupOf(filepath.Join(d.Root, system.BackupsDir), token, id)
		if err != nil {
			return err
		}
		if findPack(running, id) == nil {
			return fmt.Errorf("restore the tables of %s from %s: the pack is not running", id, dir)
		}
		if _, err := backup.RestoreWith(ctx, running, dir, backup.RestoreOptions{AsItWas: true}, nil); err != nil {
			return fmt.Errorf("restore the tables of %s from %s: %w", id, dir, err)
		}
	}
	return nil
}

// backupOf finds the backup of the pack id that token names. A token
// that is a bare timestamp comes from a journal of an earlier host, which
// named the backups db-<token>-<id>.
func backupOf(dir, token, id string) (string, error) {
	if _, err := naming.ParseStamp(token); err == nil {
		return filepath.Join(dir, backup.Prefix+token+"-"+id), nil
	}
	for _, name := range strings.Split(token, ",") {
		if _, _, packID, ok := backup.ParseName(name); ok && packID == id {
			return filepath.Join(dir, name), nil
		}
	}
	return "", fmt.Errorf("restore the tables of %s: the install's database backup (%s) holds no backup of it", id, token)
}
