package update

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/packhost/packhost/host/dbupdate"
	"github.com/packhost/packhost/host/packs"
	"github.com/packhost/packhost/internal/packpb"
)

// PackDB is DBSteps through the packs' own Backup, Restore and Upgrade
// RPCs: each pack's backup goes to Updates_Backups/db-<ts>-<id>/, and the
// token is <ts>.
type PackDB struct {
	Root string
	Log  hclog.Logger
	Now  func() time.Time
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
	ts := t.Format(TimeFormat)
	for _, id := range ids {
		p, err := findPack(running, id)
		if err != nil {
			return "", fmt.Errorf("back up %s: %w", id, err)
		}
		dir := filepath.Join(d.Root, BackupsDir, "db-"+ts+"-"+id)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return "", fmt.Errorf("back up %s: %w", id, err)
		}
		err = p.Backup(ctx, &packpb.BackupRequest{Dir: dir, CreatedAt: t.Format(time.RFC3339)}, func(ev *packpb.Progress) {
			d.log().Debug("backup", "pack", id, "table", ev.Table, "message", ev.Message)
		})
		if err != nil {
			return "", fmt.Errorf("back up the tables of %s: %w", id, err)
		}
	}
	return ts, nil
}

// Upgrade implements DBSteps.
func (d PackDB) Upgrade(ctx context.Context, running []*packs.Pack, ids []string) error {
	which := map[string]bool{}
	for _, id := range ids {
		which[id] = true
	}
	return dbupdate.Upgrade(ctx, running, which, func(id string, ev *packpb.Progress) {
		d.log().Info("upgrading", "pack", id, "table", ev.Table, "from", ev.From, "to", ev.To, "step", ev.Message)
	})
}

// Restore implements DBSteps.
func (d PackDB) Restore(ctx context.Context, running []*packs.Pack, token string) error {
	dirs, err := filepath.Glob(filepath.Join(d.Root, BackupsDir, "db-"+token+"-*"))
	if err != nil {
		return err
	}
	for _, dir := range dirs {
		id := strings.TrimPrefix(filepath.Base(dir), "db-"+token+"-")
		p, err := findPack(running, id)
		if err != nil {
			return fmt.Errorf("restore %s: %w", dir, err)
		}
		if err := p.Restore(ctx, &packpb.RestoreRequest{Dir: dir}, nil); err != nil {
			return fmt.Errorf("restore the tables of %s from %s: %w", id, dir, err)
		}
	}
	return nil
}
