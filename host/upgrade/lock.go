package upgrade

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"

	"gorm.io/gorm"

	"github.com/packhost/packhost/internal/dbconn"
)

// lockKey is the PostgreSQL advisory lock every packhost host takes before
// changing a database's tables ("pkhostup" in ASCII).
const lockKey int64 = 0x706b686f73747570

// pollEvery is how often a waiting host tries the lock again.
const pollEvery = 250 * time.Millisecond

// Lock takes the database-wide upgrade lock, so two hosts never run the
// same step: on PostgreSQL a session advisory lock held on a connection of
// its own, on SQLite an exclusive lock on the file <db>.upgrade.lock. When
// another host holds it, waiting is called once and Lock waits until the
// lock is free or ctx ends. The caller must check again what needs doing
// once it holds the lock: the other host may have done it.
func Lock(ctx context.Context, target dbconn.Target, db *gorm.DB, waiting func()) (unlock func(), err error) {
	notified := false
	wait := func() error {
		if !notified && waiting != nil {
			waiting()
			notified = true
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for the upgrade lock: %w", ctx.Err())
		case <-time.After(pollEvery):
			return nil
		}
	}
	switch target.Driver {
	case dbconn.Postgres:
		sqlDB, err := db.DB()
		if err != nil {
			return nil, err
		}
		conn, err := sqlDB.Conn(ctx)
		if err != nil {
			return nil, fmt.Errorf("upgrade lock: %w", err)
		}
		for {
			var ok bool
			if err := conn.QueryRowContext(ctx, "SELECT pg_try_advisory_lock($1)", lockKey).Scan(&ok); err != nil {
				conn.Close()
				return nil, fmt.Errorf("upgrade lock: %w", err)
			}
			if ok {
				return func() { unlockPG(conn) }, nil
			}
			if err := wait(); err != nil {
				conn.Close()
				return nil, err
			}
		}
	case dbconn.SQLite:
		path := target.DSN + ".upgrade.lock"
		f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
		if err != nil {
			return nil, fmt.Errorf("upgrade lock %s: %w", path, err)
		}
		for {
			err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
			if err == nil {
				return func() {
					_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
					f.Close()
				}, nil
			}
			if !errors.Is(err, syscall.EWOULDBLOCK) {
				f.Close()
				return nil, fmt.Errorf("upgrade lock %s: %w", path, err)
			}
			if err := wait(); err != nil {
				f.Close()
				return nil, err
			}
		}
	}
	return nil, fmt.Errorf("upgrade lock: %w", dbconn.ErrUnknownDriver)
}

func unlockPG(conn *sql.Conn) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, _ = conn.ExecContext(ctx, "SELECT pg_advisory_unlock($1)", lockKey)
	conn.Close()
}
