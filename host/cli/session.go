package cli

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/packhost/packhost/host/install"
	"github.com/packhost/packhost/host/locks"
	"github.com/packhost/packhost/host/packs"
	"github.com/packhost/packhost/host/recovery"
	"github.com/packhost/packhost/host/system"
	"github.com/packhost/packhost/internal/dbconn"
)

// session is an open system with the locks the command holds on it.
//
// The lifecycle of a session (open):
//  1. the system lock of the root in the command's mode (host/locks): a
//     second serving host is refused at once, a writer beside a serving
//     host or another writer waits at most --lock-wait, then is refused
//     naming the holder;
//  2. the database lock: exclusive for a writer, shared otherwise;
//  3. for a writer: an install whose owner is gone is recovered, and what
//     dead hosts left (temporary files, socket directories) is swept;
//  4. the system is opened and its packs started.
//
// Close stops the packs, saves the verified-binary cache (writers and
// servers only) and releases the locks, on every path.
type session struct {
	*system.System
	e      env
	c      common
	mode   locks.Mode
	lock   *locks.Lock
	dbLock *locks.DBLock
	hashes *packs.HashCache
	log    hclog.Logger
}

// open opens the system at c.root for command in mode (see session).
func open(e env, c common, command string, mode locks.Mode) (*session, error) {
	return openWith(e, c, command, mode, true)
}

// openWith is open; recover false leaves an interrupted install alone
// (for `host recover`, which acts on it as the operator chooses) and opens
// no system.
func openWith(e env, c common, command string, mode locks.Mode, recover bool) (*session, error) {
	root, err := filepath.Abs(c.root)
	if err != nil {
		return nil, fmt.Errorf("system directory %s: %w", c.root, err)
	}
	if fi, err := os.Stat(root); err != nil || !fi.IsDir() {
		return nil, fmt.Errorf("system directory %s does not exist or is not a directory; create it or pass --root", root)
	}
	c.root = root
	s := &session{e: e, c: c, mode: mode, log: c.logger(e), hashes: packs.LoadHashCache(root)}
	opts := locks.Options{Wait: c.lockWait, Waiting: func(blockers []locks.Holder) {
		s.log.Info("waiting for the system lock", "held_by", describeHolders(blockers), "wait", c.lockWait)
	}}
	if s.lock, err = locks.Acquire(e.ctx, root, mode, command, opts); err != nil {
		return nil, err
	}
	target, err := dbconn.ParseFlag(c.db, filepath.Join(root, system.DataDir, system.SQLiteFile))
	if err != nil {
		s.Close()
		return nil, err
	}
	if mode != locks.Fetch {
		if err := os.MkdirAll(filepath.Join(root, system.DataDir), 0o700); err != nil {
			s.Close()
			return nil, err
		}
		dbOpts := locks.Options{Wait: c.lockWait, Waiting: func([]locks.Holder) {
			s.log.Info("waiting for the database lock: another host serves or changes this database", "wait", c.lockWait)
		}}
		if s.dbLock, err = locks.Database(e.ctx, target, mode == locks.Write, command, dbOpts); err != nil {
			s.Close()
			return nil, err
		}
	}
	if !recover {
		return s, nil
	}
	if mode == locks.Write || mode == locks.ServeWrite {
		if err := s.recover(); err != nil {
			s.Close()
			return nil, err
		}
	}
	if s.System, err = system.Open(e.ctx, s.options(false)); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

func describeHolders(hs []locks.Holder) string {
	if len(hs) == 0 {
		return "another process"
	}
	out := ""
	for i, h := range hs {
		if i > 0 {
			out += ", "
		}
		out += h.String()
	}
	return out
}

func (s *session) options(readOnly bool) system.Options {
	o := s.c.options(s.e, readOnly)
	o.Hashes = s.hashes
	return o
}

// reopen stops the system's packs and opens it again: after an install,
// the new versions run.
func (s *session) reopen() error { return s.reopenWith(false) }

// reopenWith is reopen; renewRoles gives the packs' database roles new
// passwords first (a serving host's start, on PostgreSQL).
func (s *session) reopenWith(renewRoles bool) error {
	s.System.Close()
	s.System = nil
	opts := s.options(false)
	opts.RenewRoles = renewRoles
	sys, err := system.Open(s.e.ctx, opts)
	if err != nil {
		return err
	}
	s.System = sys
	return nil
}

// writing holds the database lock exclusively for f (a host that will
// serve holds it shared otherwise).
func (s *session) writing(f func() error) error {
	if s.dbLock == nil {
		return f()
	}
	shared := !s.dbLock.IsExclusive()
	if shared {
		if err := s.dbLock.Exclusive(s.e.ctx, locks.Options{Wait: s.c.lockWait, Waiting: func([]locks.Holder) {
			s.log.Info("waiting for the database lock: another host serves or changes this database", "wait", s.c.lockWait)
		}}); err != nil {
			return err
		}
	}
	err := f()
	if shared {
		if serr := s.dbLock.Shared(s.e.ctx); serr != nil && err == nil {
			err = serr
		}
	}
	return err
}

// Close stops the packs, saves the verified-binary cache and releases
// the locks. Safe to call more than once.
func (s *session) Close() {
	s.System.Close()
	s.System = nil
	if s.lock != nil {
		if err := s.hashes.Save(); err != nil {
			s.log.Warn("the verified-binary cache was not saved; binaries are hashed again at the next start", "error", err)
		}
	}
	s.dbLock.Release()
	s.dbLock = nil
	s.lock.Release()
	s.lock = nil
}

// recover finishes or undoes an install whose owner is gone, then sweeps
// what stopped hosts left. The session holds the system's write lock.
func (s *session) recover() error {
	if n := packs.SweepPrivateDirs(); n > 0 {
		s.log.Info("removed the socket directories of hosts that are gone", "count", n)
	}
	j, err := recovery.Read(s.c.root)
	if err != nil {
		return err
	}
	if j == nil {
		swept, err := recovery.Sweep(s.c.root, time.Now())
		if len(swept) > 0 {
			s.log.Warn("removed what a stopped host left being written", "files", swept)
		}
		if err != nil {
			s.log.Warn(err.Error())
		}
		return nil
	}
	return s.writing(func() error {
		r, err := recovery.Recover(s.c.root)
		if err != nil {
			return err
		}
		if r.Action != "" || len(r.Swept) > 0 || r.Warning != "" {
			s.log.Warn(r.String())
		}
		if !r.NeedsDBRestore {
			return nil
		}
		sys, err := system.Open(s.e.ctx, s.options(false))
		if err != nil {
			return fmt.Errorf("recover an interrupted install: %w", err)
		}
		defer sys.Close()
		if err := recovery.FinishRecovery(s.e.ctx, sys.Root, sys.Packs, s.packDB(sys)); err != nil {
			return err
		}
		s.log.Info("the database is back as it was before the interrupted install")
		return nil
	})
}

// packDB is the install's database steps on sys.
func (s *session) packDB(sys *system.System) install.PackDB {
	return install.PackDB{Root: sys.Root, Log: s.log, Target: sys.Target, DB: sys.DB, Roles: sys.SetupRoles}
}
