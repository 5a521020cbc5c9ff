package cli

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"

	"github.com/packhost/packhost/host/progress"
	"github.com/packhost/packhost/host/report"
	"github.com/packhost/packhost/host/system"
	"github.com/packhost/packhost/host/upgrade"
	"github.com/packhost/packhost/host/web"
	"github.com/packhost/packhost/internal/packpb"
)

type runFlags struct {
	common
	addr           string
	adminAddr      string
	installUpdates bool
	ignoreUpdates  bool
	updateDB       bool
	noBackup       bool
	adminOnly      bool
}

// runCmd checks code updates, then the database, then serves. The order of
// decisions is SPEC's: pending updates (exit 3 unless told what to do),
// schema conflicts (exit 5, no flag passes them), database updates (exit 4
// unless --update-db or --admin-only).
func runCmd(e env, args []string) (int, error) {
	var f runFlags
	fs := newFlags(e, "run")
	f.register(fs)
	fs.StringVar(&f.addr, "addr", "127.0.0.1:8080", "address to serve HTTP on")
	fs.StringVar(&f.adminAddr, "admin-addr", "", "serve the admin pages on this address of their own (recommended), and none on --addr")
	fs.BoolVar(&f.installUpdates, "install-updates", false, "install the pending update zips, then go on")
	fs.BoolVar(&f.ignoreUpdates, "ignore-updates", false, "go on without installing pending update zips")
	fs.BoolVar(&f.updateDB, "update-db", false, "back up, then upgrade tables that need it, then serve")
	fs.BoolVar(&f.noBackup, "no-backup", false, "do not back up before upgrading (not recommended)")
	fs.BoolVar(&f.adminOnly, "admin-only", false, "serve only the admin pages; other pages answer 503")
	if err := parse(fs, args); err != nil {
		return 0, err
	}
	if fs.NArg() > 0 {
		return 0, usageErr("host run takes no arguments, got %q", fs.Args())
	}
	if f.installUpdates && f.ignoreUpdates {
		return 0, usageErr("--install-updates and --ignore-updates exclude each other")
	}
	log := f.logger(e)
	// An install the host did not finish (it died) is finished or undone
	// before anything else.
	if err := recoverInstall(e, f.common); err != nil {
		return 1, err
	}
	sys, err := system.Open(e.ctx, f.options(e, false))
	if err != nil {
		return 1, err
	}
	defer func() { sys.Close() }()

	r, err := sys.Report(e.ctx)
	if err != nil {
		return 1, err
	}
	if len(r.PendingUpdates) > 0 {
		switch {
		case f.installUpdates:
			if err := installPending(e, sys, f.noBackup); err != nil {
				_ = r.WriteText(e.stdout)
				return 1, err
			}
			// The packs that ran are the old versions: start the new ones.
			sys.Close()
			if sys, err = system.Open(e.ctx, f.options(e, false)); err != nil {
				return 1, err
			}
			if r, err = sys.Report(e.ctx); err != nil {
				return 1, err
			}
		case f.ignoreUpdates:
			log.Warn("code updates are pending and ignored (--ignore-updates)", "count", len(r.PendingUpdates))
			r.PendingUpdates = nil
			r.Finish()
		default:
			_ = r.WriteText(e.stdout)
			return report.ExitCodeUpdates, nil
		}
	}
	if len(sys.Failed) > 0 {
		// A pack that did not start is left out; the others serve. The
		// core pack is required.
		var failed []string
		for _, err := range sys.Failed {
			log.Error("pack failed", "error", err)
			failed = append(failed, err.Error())
		}
		if sys.Pack("core") == nil {
			_ = r.WriteText(e.stdout)
			return 1, errors.New("the core pack is not running (see the problem above), so nothing can be served; reinstall it from its update zip")
		}
		log.Warn("serving without the packs that did not start; fix or uninstall them")
		r.Problems = slices.DeleteFunc(r.Problems, func(p string) bool { return slices.Contains(failed, p) })
		r.Finish()
	}
	if r.ExitCode == report.ExitError {
		_ = r.WriteText(e.stdout)
		return 1, errors.New("not serving: the problems above must be fixed first")
	}
	reason := ""
	switch r.ExitCode {
	case report.ExitSchemaConflict:
		_ = r.WriteText(e.stdout)
		return report.ExitSchemaConflict, nil
	case report.ExitDBUpdates:
		switch {
		case f.updateDB:
			if err := upgradeDB(e, sys, f.noBackup); err != nil {
				return 1, err
			}
		case f.adminOnly:
			reason = "The database needs updates."
			log.Warn("database updates needed; serving only the admin pages (--admin-only)")
		default:
			_ = r.WriteText(e.stdout)
			return report.ExitDBUpdates, nil
		}
	}
	err = web.Serve(e.ctx, web.Config{Addr: f.addr, AdminAddr: f.adminAddr, AdminOnly: f.adminOnly, Reason: reason, System: sys, Logger: log, Stdout: e.stdout,
		Decisions: web.StartDecisions(sys, r, web.StartFlags{Addr: f.addr, InstallUpdates: f.installUpdates, IgnoreUpdates: f.ignoreUpdates,
			UpdateDB: f.updateDB, NoBackup: f.noBackup, AdminOnly: f.adminOnly, Reason: reason})},
		func(a net.Addr) { log.Info("serving", "addr", "http://"+a.String()+"/") })
	if err != nil {
		return 1, err
	}
	log.Info("stopped")
	return 0, nil
}

// upgradeDB backs up and upgrades every pack that needs it (see
// upgrade.Run), showing progress.
func upgradeDB(e env, sys *system.System, noBackup bool) error {
	bars := progress.New(e.stdout, sys.Log)
	r, err := upgrade.Run(e.ctx, sys, upgrade.RunOptions{
		NoBackup: noBackup,
		Backup: func(ctx context.Context, ids []string) error {
			return backupPacks(ctx, e, sys, ids)
		},
		Progress: func(id string, ev *packpb.Progress) {
			if ev.Done {
				bars.Done(id, ev.Message)
				return
			}
			bars.Update(id, ev.Current, ev.Total, fmt.Sprintf("%s %d -> %d: %s", ev.Table, ev.From, ev.To, ev.Message))
		},
		Waiting: func() {
			sys.Log.Info("another host is upgrading this database; waiting for it to finish")
		},
	})
	if err != nil {
		if r != nil {
			_ = r.WriteText(e.stdout)
		}
		return err
	}
	return nil
}
