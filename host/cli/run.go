package cli

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/packhost/packhost/host/control"
	"github.com/packhost/packhost/host/decide"
	"github.com/packhost/packhost/host/locks"
	"github.com/packhost/packhost/host/progress"
	"github.com/packhost/packhost/host/report"
	"github.com/packhost/packhost/host/upgrade"
	"github.com/packhost/packhost/host/web"
	"github.com/packhost/packhost/internal/dbconn"
	"github.com/packhost/packhost/internal/packpb"
)

type runFlags struct {
	common
	decide.Flags
}

// runCmd checks code updates, then the database, then serves. What it
// does is host/decide's Next, taken again after each action (an install,
// an upgrade) until it says to serve or to stop; the decisions and what
// came of them are the record the admin pages show.
func runCmd(e env, args []string) (int, error) {
	var f runFlags
	fs := newFlags(e, "run")
	f.register(fs)
	fs.StringVar(&f.Addr, "addr", "127.0.0.1:8080", "address to serve HTTP on")
	fs.StringVar(&f.AdminAddr, "admin-addr", "", "serve the admin pages on this address of their own (recommended), and none on --addr")
	fs.BoolVar(&f.InstallUpdates, "install-updates", false, "install the pending update zips, then go on")
	fs.BoolVar(&f.IgnoreUpdates, "ignore-updates", false, "go on without installing pending update zips")
	fs.BoolVar(&f.UpdateDB, "update-db", false, "back up, then upgrade tables that need it, then serve")
	fs.BoolVar(&f.NoBackup, "no-backup", false, "do not back up before installing or upgrading (not recommended)")
	fs.BoolVar(&f.AdminOnly, "admin-only", false, "serve only the admin pages; other pages answer 503")
	if err := parse(fs, args); err != nil {
		return 0, err
	}
	if fs.NArg() > 0 {
		return 0, usageErr("host run takes no arguments, got %q", fs.Args())
	}
	if f.InstallUpdates && f.IgnoreUpdates {
		return 0, usageErr("--install-updates and --ignore-updates exclude each other")
	}
	s, err := open(e, f.common, "host run", locks.ServeWrite)
	if err != nil {
		return 1, err
	}
	defer s.Close()
	log := s.log

	var record []decide.Decision
	var done []decide.Action
	for {
		r, err := s.Report(e.ctx)
		if err != nil {
			return 1, err
		}
		plan := decide.Next(r, f.Flags, done...)
		r.ExitCode, r.Hints = plan.ExitCode, plan.Hints
		switch plan.Next {
		case decide.Stop:
			_ = r.WriteText(e.stdout)
			if plan.Error != "" {
				return plan.ExitCode, errors.New(plan.Error)
			}
			return plan.ExitCode, nil
		case decide.Install:
			d := lastDecision(plan)
			res, err := installUpdates(e, s, installOptions{noBackup: f.NoBackup})
			if err != nil {
				return 1, err
			}
			d.Outcome = fmt.Sprintf("installed %d zip(s)", len(res.Zips))
			for _, z := range res.Zips {
				d.Outcome += fmt.Sprintf("; %s %s (was %s)", z.Manifest.ID, z.Manifest.Version, orNew(z.Installed))
			}
			record = append(record, d)
			done = append(done, decide.Install)
			// The packs that ran are the old versions: start the new ones.
			if err := s.reopen(); err != nil {
				return 1, err
			}
		case decide.Upgrade:
			d := lastDecision(plan)
			if err := s.writing(func() error { return upgradeDB(e, s, f.NoBackup) }); err != nil {
				return 1, err
			}
			d.Outcome = "upgraded; every table is at its code version"
			record = append(record, d)
			done = append(done, decide.Upgrade)
		case decide.Serve, decide.ServeAdmin:
			left := 0
			for _, p := range r.Packs {
				if !p.Running {
					log.Error("pack left out", "pack", p.ID, "error", p.Error)
					left++
				}
			}
			if left > 0 {
				log.Warn("serving without the packs that did not start or do not answer; fix or uninstall them")
			}
			if plan.Next == decide.ServeAdmin {
				log.Warn("serving only the admin pages (--admin-only)", "reason", plan.Reason)
			}
			return serve(e, s, f, plan, append(record, plan.Decisions...))
		}
	}
}

func lastDecision(p decide.Plan) decide.Decision {
	return p.Decisions[len(p.Decisions)-1]
}

// serve turns the session's locks into a serving host's (the database
// lock shared, the system lock a serving one that names the control
// socket) and serves until ctx ends.
func serve(e env, s *session, f runFlags, plan decide.Plan, record []decide.Decision) (int, error) {
	if s.Target.Driver == dbconn.Postgres {
		// Every start of a serving host gives the packs' database roles
		// new passwords: the packs start again with theirs.
		if err := s.reopenWith(true); err != nil {
			return 1, err
		}
	}
	ctl, err := control.Listen(func(ctx context.Context) (*report.Report, error) { return s.Report(ctx) }, s.log.Named("control"))
	if err != nil {
		return 1, err
	}
	defer ctl.Close()
	if err := s.dbLock.Shared(e.ctx); err != nil {
		return 1, err
	}
	if err := s.lock.ToServe(ctl.Path()); err != nil {
		return 1, err
	}
	if err := s.hashes.Save(); err != nil {
		s.log.Warn("the verified-binary cache was not saved; binaries are hashed again at the next start", "error", err)
	}
	started := time.Now()
	err = web.Serve(e.ctx, web.Config{Addr: f.Addr, AdminAddr: f.AdminAddr, AdminOnly: plan.Next == decide.ServeAdmin, Reason: plan.Reason, System: s.System,
		Logger: s.log, Stdout: e.stdout, Decisions: record},
		func(a net.Addr) { s.log.Info("serving", "addr", "http://"+a.String()+"/") })
	if err != nil {
		return 1, err
	}
	s.log.Info("stopped", "served", time.Since(started).Round(time.Second))
	return 0, nil
}

// upgradeDB backs up and upgrades every pack that needs it (see
// upgrade.Run), showing progress. The caller holds the database lock
// exclusively.
func upgradeDB(e env, s *session, noBackup bool) error {
	bars := progress.New(e.stdout, s.Log)
	r, err := upgrade.Run(e.ctx, s.System, upgrade.RunOptions{
		NoBackup: noBackup,
		Backup: func(ctx context.Context, ids []string) error {
			return backupPacks(ctx, e, s, ids)
		},
		Progress: func(id string, ev *packpb.Progress) {
			if ev.Done {
				bars.Done(id, ev.Message)
				return
			}
			bars.Update(id, ev.Current, ev.Total, fmt.Sprintf("%s %d -> %d: %s", ev.Table, ev.From, ev.To, ev.Message))
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
