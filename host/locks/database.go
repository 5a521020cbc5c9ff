package locks

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/packhost/packhost/internal/dbconn"
)

// dbKey is the PostgreSQL advisory lock of a packhost database
// ("pkhostup" in ASCII): serving hosts hold it shared, a command that
// changes tables holds it exclusively.
const dbKey int64 = 0x706b686f73747570

// DBLock is the lock of a database that several systems (roots) may
// share: a serving host or a hot backup holds it shared, a command that
// changes tables (an install, an upgrade, a restore, a repair, recovery)
// exclusively, so nothing upgrades tables under a host that serves them,
// on any machine. On PostgreSQL it is a session advisory lock held on a
// connection of its own, named after the command (pg_stat_activity shows
// it); on SQLite a flock on <database file>.lock.
type DBLock struct {
	target    dbconn.Target
	command   string
	db        *sql.DB
	conn      *sql.Conn
	file      *os.File
	exclusive bool
	held      bool
}

// Database takes the database lock of target, shared or exclusive. A busy
// lock is waited for up to opts.Wait, then refused with ErrBusy naming the
// holders PostgreSQL knows of.
func Database(ctx context.Context, target dbconn.Target, exclusive bool, command string, opts Options) (*DBLock, error) {
	l := &DBLock{target: target, command: command}
	switch target.Driver {
	case dbconn.Postgres:
		db, err := dbconn.OpenSQL(target)
		if err != nil {
			return nil, fmt.Errorf("database lock: %w", err)
		}
		l.db = db
		conn, err := db.Conn(ctx)
		if err != nil {
			db.Close()
			return nil, fmt.Errorf("database lock: %w", err)
		}
		l.conn = conn
		if _, err := conn.ExecContext(ctx, "SELECT set_config('application_name', $1, false)", appName(command)); err != nil {
			l.Release()
			return nil, fmt.Errorf("database lock: %w", err)
		}
	case dbconn.SQLite:
		f, err := os.OpenFile(target.DSN+".lock", os.O_CREATE|os.O_RDWR, 0o600)
		if err != nil {
			return nil, fmt.Errorf("database lock: %w", err)
		}
		l.file = f
	default:
		return nil, fmt.Errorf("database lock: %w", dbconn.ErrUnknownDriver)
	}
	if err := l.take(ctx, exclusive, opts); err != nil {
		l.Release()
		return nil, err
	}
	return l, nil
}

// Exclusive turns a shared lock into an exclusive one (waiting for the
// other holders as Database does). On PostgreSQL the shared lock is kept
// until the exclusive one is held.
func (l *DBLock) Exclusive(ctx context.Context, opts Options) error {
	if l.exclusive {
		return nil
	}
	return l.take(ctx, true, opts)
}

// Shared turns an exclusive lock into a shared one. On PostgreSQL it does
// so without a moment in which another command could take it.
func (l *DBLock) Shared(ctx context.Context) error {
	if !l.exclusive {
		return nil
	}
	return l.take(ctx, false, Options{})
}

// Exclusive reports whether the lock is held exclusively.
func (l *DBLock) IsExclusive() bool { return l.exclusive }

func (l *DBLock) take(ctx context.Context, exclusive bool, opts Options) error {
	wait := opts.Wait
	if wait == 0 {
		wait = DefaultWait
	}
	deadline := time.Now().Add(max(wait, 0))
	told := false
	for {
		ok, err := l.try(ctx, exclusive)
		if err != nil {
			return fmt.Errorf("database lock: %w", err)
		}
		if ok {
			l.exclusive, l.held = exclusive, true
			return nil
		}
		if !told && opts.Waiting != nil {
			opts.Waiting(nil)
			told = true
		}
		if time.Now().After(deadline) {
			what := "exclusively"
			if !exclusive {
				what = "shared"
			}
			return fmt.Errorf("%w: the database lock of %s could not be taken %s within %s: %s holds it; commands that change tables never run beside a serving host or another such command, on any system sharing the database: stop them first",
				ErrBusy, l.target, what, wait.Round(time.Millisecond), l.holders(ctx))
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for the database lock: %w", ctx.Err())
		case <-time.After(pollEvery):
		}
	}
}

// try takes the lock in the asked mode without waiting, leaving the other
// mode, if held, once the new one is held.
func (l *DBLock) try(ctx context.Context, exclusive bool) (bool, error) {
	if l.file != nil {
		how := syscall.LOCK_SH
		if exclusive {
			how = syscall.LOCK_EX
		}
		err := syscall.Flock(int(l.file.Fd()), how|syscall.LOCK_NB)
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return false, nil
		}
		return err == nil, err
	}
	q := "SELECT pg_try_advisory_lock_shared($1)"
	if exclusive {
		q = "SELECT pg_try_advisory_lock($1)"
	}
	var ok bool
	if err := l.conn.QueryRowContext(ctx, q, dbKey).Scan(&ok); err != nil || !ok {
		return false, err
	}
	if l.held && l.exclusive != exclusive {
		// A session may hold both modes; leave the old one.
		unlock := "SELECT pg_advisory_unlock_shared($1)"
		if l.exclusive {
			unlock = "SELECT pg_advisory_unlock($1)"
		}
		if _, err := l.conn.ExecContext(ctx, unlock, dbKey); err != nil {
			return false, err
		}
	}
	return true, nil
}

// Release gives the lock up; safe to call more than once and on nil.
func (l *DBLock) Release() {
	if l == nil {
		return
	}
	if l.file != nil {
		_ = syscall.Flock(int(l.file.Fd()), syscall.LOCK_UN)
		l.file.Close()
		l.file = nil
	}
	if l.conn != nil {
		// Closing the session releases its advisory locks.
		l.conn.Close()
		l.conn = nil
	}
	if l.db != nil {
		l.db.Close()
		l.db = nil
	}
	l.held = false
}

func appName(command string) string {
	host, _ := os.Hostname()
	s := fmt.Sprintf("packhost %s pid %d on %s", command, os.Getpid(), host)
	if len(s) > 63 {
		s = s[:63]
	}
	return s
}

// holders names the sessions holding the lock, as pg_stat_activity shows
// them (the application_name a packhost host sets, its address and since
// when).
func (l *DBLock) holders(ctx context.Context) string {
	if l.conn == nil {
		return "another process (" + l.target.DSN + ".lock)"
	}
	rows, err := l.conn.QueryContext(ctx, `SELECT coalesce(a.application_name, ''), coalesce(host(a.client_addr), 'local'), a.backend_start, l.mode
		FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
		WHERE l.locktype = 'advisory' AND l.granted AND l.classid = $1 AND l.objid = $2 AND l.pid <> pg_backend_pid()
		ORDER BY a.backend_start`, int64(uint64(dbKey)>>32), int64(uint64(dbKey)&0xffffffff))
	if err != nil {
		return "another session"
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var name, addr, mode string
		var since time.Time
		if err := rows.Scan(&name, &addr, &since, &mode); err != nil {
			return "another session"
		}
		if name == "" {
			name = "a session"
		}
		kind := "shared"
		if mode == "ExclusiveLock" {
			kind = "exclusive"
		}
		out = append(out, fmt.Sprintf("%s (from %s, %s, connected since %s)", name, addr, kind, since.UTC().Format("2006-01-02 15:04:05 UTC")))
	}
	if len(out) == 0 {
		return "another session"
	}
	return strings.Join(out, "; ")
}
