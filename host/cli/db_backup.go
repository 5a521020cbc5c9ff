package cli

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/packhost/packhost/host/backup"
	"github.com/packhost/packhost/host/locks"
	"github.com/packhost/packhost/host/packs"
	"github.com/packhost/packhost/host/progress"
	"github.com/packhost/packhost/host/system"
	"github.com/packhost/packhost/internal/packpb"
	"github.com/packhost/packhost/internal/tablestate"
)

// dbBackupCmd backs up every running pack's tables and settings (or one
// pack's, with --pack) to Updates_Backups.
func dbBackupCmd(e env, args []string) (int, error) {
	var c common
	fs := newFlags(e, "db backup")
	c.register(fs)
	packID := fs.String("pack", "", "back up only this pack (default: every running pack that owns tables)")
	if err := parse(fs, args); err != nil {
		return 0, err
	}
	if fs.NArg() > 0 {
		return 0, usageErr("host db backup takes no arguments, got %q", fs.Args())
	}
	// A hot backup: beside a serving host, not beside a command that
	// changes packs or tables.
	sys, err := open(e, c, "host db backup", locks.Read)
	if err != nil {
		return 1, err
	}
	defer sys.Close()
	var list []*packs.Pack
	if *packID != "" {
		p := sys.Pack(*packID)
		if p == nil {
			return 1, fmt.Errorf("db backup: pack %s is not installed or did not start; `host status` lists the packs", *packID)
		}
		list = append(list, p)
	} else {
		for _, p := range sys.Packs {
			if len(p.Info.GetTables()) > 0 {
				list = append(list, p)
			}
		}
	}
	paths, err := backupWithProgress(e.ctx, e, sys, list)
	for _, p := range paths {
		fmt.Fprintln(e.stdout, p)
	}
	if err != nil {
		return 1, err
	}
	pruneBackups(sys)
	if *packID == "" && len(sys.Failed) > 0 {
		var msgs []string
		for _, err := range sys.Failed {
			msgs = append(msgs, err.Error())
		}
		return 1, fmt.Errorf("db backup: packs that did not start were not backed up: %s", strings.Join(msgs, "; "))
	}
	return 0, nil
}

// backupWithProgress backs up list with one timestamp, showing a progress
// bar per pack on a terminal and log lines otherwise.
func backupWithProgress(ctx context.Context, e env, sys *session, list []*packs.Pack) ([]string, error) {
	bars := progress.New(e.stdout, sys.Log)
	return backup.Packs(ctx, sys.Path(system.BackupsDir), list, time.Now(), func(id string, ev *packpb.Progress) {
		task := "backup " + id
		if ev.Done {
			bars.Done(task, ev.Message)
			return
		}
		bars.Update(task, ev.Current, ev.Total, strings.TrimSpace(ev.Table+" "+ev.Message))
	})
}

// dbRestoreCmd verifies a database backup and restores it through the pack
// it belongs to, under the database-wide upgrade lock.
func dbRestoreCmd(e env, args []string) (int, error) {
	var c common
	fs := newFlags(e, "db restore")
	c.register(fs)
	verifyOnly := fs.Bool("verify", false, "only verify the backup (checksums, row counts); change nothing")
	if err := parse(fs, args); err != nil {
		return 0, err
	}
	// The path may come before flags: host db restore PATH --root DIR.
	var arg string
	if fs.NArg() > 0 {
		arg = fs.Arg(0)
		if err := parse(fs, fs.Args()[1:]); err != nil {
			return 0, err
		}
	}
	if arg == "" || fs.NArg() > 0 {
		return 0, usageErr("host db restore takes one argument, the backup's directory (see Updates_Backups)")
	}
	mode := locks.Write
	if *verifyOnly {
		mode = locks.Read
	}
	sys, err := open(e, c, "host db restore", mode)
	if err != nil {
		return 1, err
	}
	defer sys.Close()
	path, err := backup.Resolve(sys.Path(system.BackupsDir), arg)
	if err != nil {
		return 1, fmt.Errorf("db restore: %w", err)
	}
	bars := progress.New(e.stdout, sys.Log)
	m, err := backup.Restore(e.ctx, sys.Packs, path, *verifyOnly, func(id string, ev *packpb.Progress) {
		task := "restore " + id
		if ev.Done {
			bars.Done(task, ev.Message)
			return
		}
		bars.Update(task, ev.Current, ev.Total, strings.TrimSpace(ev.Table+" "+ev.Message))
	})
	if err != nil {
		return 1, err
	}
	if *verifyOnly {
		fmt.Fprintf(e.stdout, "%s: verified, a backup of pack %s %s taken %s\n", path, m.PackID, m.PackVer, m.CreatedAt)
		return 0, nil
	}
	fmt.Fprintf(e.stdout, "restored pack %s from %s\n", m.PackID, path)
	states, err := sys.Pack(m.PackID).CheckSchema(e.ctx)
	if err != nil {
		return 1, fmt.Errorf("db restore: check the restored tables: %w", err)
	}
	outdated := false
	for _, t := range m.Tables {
		for _, st := range states {
			if st.Name != t.Name {
				continue
			}
			fmt.Fprintf(e.stdout, "  %-24s version %-3d %10d rows  %s\n", t.Name, t.Version, t.Rows, tablestate.Name(st.State))
			outdated = outdated || st.State == packpb.TableState_TABLE_STATE_OUTDATED
		}
	}
	if outdated {
		fmt.Fprintln(e.stdout, "The backup is older than the installed pack: run `host db upgrade` (or `host run --update-db`) to upgrade the restored tables.")
	}
	return 0, nil
}

// errNoPacksToBackUp is returned when a backup was asked of packs that are
// not running.
var errNoPacksToBackUp = errors.New("not running")
