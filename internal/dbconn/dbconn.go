// Package dbconn opens the databases packhost runs on: the embedded SQLite
// file (pure Go, no cgo) and PostgreSQL. The host and every pack open their
// connections through it, so both sides agree on pragmas and pool settings.
package dbconn

import (
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/glebarez/sqlite"
	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" database/sql driver
	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"
)

// Drivers.
const (
	SQLite   = "sqlite"
	Postgres = "postgres"
)

// Environment variables through which the host hands the database to a pack.
// The DSN travels in the environment, never on the command line, so that it
// does not show in process listings.
const (
	EnvDriver   = "PACKHOST_DB_DRIVER"
	EnvDSN      = "PACKHOST_DB_DSN"
	EnvReadOnly = "PACKHOST_DB_READONLY"
)

// Target names a database: which driver and how to reach it.
type Target struct {
	Driver string
	// DSN is a file path for SQLite and a postgres:// URL for PostgreSQL.
	DSN string
	// ReadOnly opens the database so that nothing can be written
	// (used by `host status`). An SQLite file is then opened immutable:
	// no lock, no write-ahead log or shared-memory file is made or
	// touched, so the caller must have made sure its write-ahead log holds
	// nothing (see SQLiteWALEmpty).
	ReadOnly bool
}

// ParseFlag turns the value of --db into a Target. Empty means the embedded
// SQLite file at sqlitePath.
func ParseFlag(flag, sqlitePath string) (Target, error) {
	switch {
	case flag == "":
		return Target{Driver: SQLite, DSN: sqlitePath}, nil
	case strings.HasPrefix(flag, "postgres://"), strings.HasPrefix(flag, "postgresql://"):
		if _, err := url.Parse(flag); err != nil {
			// url.Error quotes the whole URL, password included: say
			// what is wrong without it.
			return Target{}, errors.New("--db: not a valid postgres URL (postgres://USER:PASSWORD@HOST:PORT/DATABASE)")
		}
		return Target{Driver: Postgres, DSN: flag}, nil
	case strings.HasPrefix(flag, "sqlite:"):
		return Target{Driver: SQLite, DSN: strings.TrimPrefix(flag, "sqlite:")}, nil
	default:
		return Target{}, fmt.Errorf("--db %q: expected postgres://... or sqlite:PATH (leave it empty for the embedded database)", Redact(flag))
	}
}

// Env returns the environment entries that hand t to a pack.
func (t Target) Env() []string {
	ro := "0"
	if t.ReadOnly {
		ro = "1"
	}
	return []string{EnvDriver + "=" + t.Driver, EnvDSN + "=" + t.DSN, EnvReadOnly + "=" + ro}
}

// FromEnv reads the Target a host handed over with Env. ok is false when the
// host handed no database.
func FromEnv(getenv func(string) string) (t Target, ok bool) {
	t = Target{Driver: getenv(EnvDriver), DSN: getenv(EnvDSN), ReadOnly: getenv(EnvReadOnly) == "1"}
	return t, t.Driver != "" && t.DSN != ""
}

// String names the database for reports, without passwords.
func (t Target) String() string {
	if t.Driver == SQLite {
		return "sqlite:" + t.DSN
	}
	return Redact(t.DSN)
}

// Redact hides the password of a URL-shaped DSN.
func Redact(dsn string) string {
	u, err := url.Parse(dsn)
	if err != nil || u.User == nil {
		return dsn
	}
	if _, has := u.User.Password(); has {
		u.User = url.UserPassword(u.User.Username(), "xxxxx")
	}
	return u.String()
}

// ErrUnknownDriver is returned by Open for a driver other than sqlite or postgres.
var ErrUnknownDriver = errors.New("unknown database driver")

// Open connects to t. SQLite runs in WAL mode with a busy timeout, because the
// host and every pack process share the file.
func Open(t Target) (*gorm.DB, error) {
	cfg := &gorm.Config{
		Logger:                                   logger.Discard,
		DisableForeignKeyConstraintWhenMigrating: false,
		SkipDefaultTransaction:                   true,
	}
	switch t.Driver {
	case SQLite:
		q := url.Values{}
		q.Add("_pragma", "busy_timeout(10000)")
		q.Add("_pragma", "foreign_keys(1)")
		q.Add("_pragma", "synchronous(NORMAL)")
		if t.ReadOnly {
			q.Add("mode", "ro")
			q.Add("immutable", "1")
		} else {
			q.Add("_pragma", "journal_mode(WAL)")
		}
		q.Add("_txlock", "immediate")
		db, err := gorm.Open(sqlite.Open("file:"+t.DSN+"?"+q.Encode()), cfg)
		if err != nil {
			return nil, fmt.Errorf("open sqlite %s: %w", t.DSN, err)
		}
		sqlDB, err := db.DB()
		if err != nil {
			return nil, err
		}
		sqlDB.SetMaxOpenConns(1)
		sqlDB.SetConnMaxIdleTime(time.Minute)
		if err := sqlDB.Ping(); err != nil {
			_ = sqlDB.Close()
			return nil, fmt.Errorf("open sqlite %s: %w", t.DSN, err)
		}
		return db, nil
	case Postgres:
		dsn := t.DSN
		if t.ReadOnly {
			dsn = addPGOption(dsn, "default_transaction_read_only", "on")
		}
		db, err := gorm.Open(postgres.New(postgres.Config{DSN: dsn}), cfg)
		if err != nil {
			return nil, fmt.Errorf("open postgres %s: %w", Redact(t.DSN), err)
		}
		sqlDB, err := db.DB()
		if err != nil {
			return nil, err
		}
		sqlDB.SetMaxOpenConns(4)
		sqlDB.SetConnMaxIdleTime(time.Minute)
		return db, nil
	default:
		return nil, fmt.Errorf("open %q: %w", t.Driver, ErrUnknownDriver)
	}
}

// Close closes the pool behind db.
func Close(db *gorm.DB) error {
	if db == nil {
		return nil
	}
	sqlDB, err := db.DB()
	if err != nil {
		return err
	}
	return sqlDB.Close()
}

func addPGOption(dsn, key, value string) string {
	u, err := url.Parse(dsn)
	if err != nil {
		return dsn
	}
	q := u.Query()
	q.Set(key, value)
	u.RawQuery = q.Encode()
	return u.String()
}

// OpenSQL opens a PostgreSQL target as a plain database/sql pool of one
// connection, for what needs a session of its own (the database lock).
func OpenSQL(t Target) (*sql.DB, error) {
	if t.Driver != Postgres {
		return nil, fmt.Errorf("open %q as a session: %w", t.Driver, ErrUnknownDriver)
	}
	db, err := sql.Open("pgx", t.DSN)
	if err != nil {
		return nil, fmt.Errorf("open postgres %s: %w", Redact(t.DSN), err)
	}
	db.SetMaxOpenConns(1)
	return db, nil
}

// SQLiteWALEmpty reports whether the SQLite file at path has no
// write-ahead log with frames in it: everything committed is in the file
// itself, which an immutable reader then reads whole.
func SQLiteWALEmpty(path string) bool {
	fi, err := os.Stat(path + "-wal")
	return err != nil || fi.Size() == 0
}
