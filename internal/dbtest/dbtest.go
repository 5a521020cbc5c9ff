// Package dbtest gives tests fresh, empty databases: an SQLite file and, when
// a PostgreSQL server is available, a PostgreSQL database.
//
// The PostgreSQL server is named by PACKHOST_TEST_PG_DSN, a URL of a role
// allowed to CREATE DATABASE (scripts/with-postgres.sh starts a throw-away
// server and sets it). Without it the PostgreSQL half of a test is skipped,
// unless PACKHOST_REQUIRE_PG=1, which turns the skip into a failure so that CI
// cannot go green without having run it.
//
// Every call makes its own database ("t_" and random hex), so tests may run in
// parallel, and so may many test binaries against the same server.
package dbtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"gorm.io/gorm"

	"github.com/packhost/packhost/internal/dbconn"
)

// Environment variables read by Postgres.
const (
	// EnvPGDSN is the URL of a PostgreSQL server and a role that may create
	// and drop databases.
	EnvPGDSN = "PACKHOST_TEST_PG_DSN"
	// EnvRequirePG set to 1 makes Postgres fail instead of skip when
	// EnvPGDSN is unset.
	EnvRequirePG = "PACKHOST_REQUIRE_PG"
)

// DB is one fresh, empty database for a test.
type DB struct {
	// Name is "sqlite" or "postgres" (used in subtest names).
	Name string
	// Target reaches the database; hand it to packs or to dbconn.Open.
	Target dbconn.Target
	// Gorm is an open connection, closed at t.Cleanup.
	Gorm *gorm.DB
}

// ForEach runs fn as the subtests "on sqlite" and "on postgres", each with a
// fresh empty database. The postgres subtest is skipped (or fails) as
// Postgres says.
func ForEach(t *testing.T, fn func(t *testing.T, db DB)) {
	t.Helper()
	t.Run("on sqlite", func(t *testing.T) {
		fn(t, SQLite(t))
	})
	t.Run("on postgres", func(t *testing.T) {
		fn(t, Postgres(t))
	})
}

// SQLite makes a fresh SQLite database in a file under t.TempDir().
func SQLite(t testing.TB) DB {
	t.Helper()
	target := dbconn.Target{Driver: dbconn.SQLite, DSN: filepath.Join(t.TempDir(), "test.db")}
	db, err := dbconn.Open(target)
	if err != nil {
		t.Fatalf("dbtest: %v", err)
	}
	t.Cleanup(func() {
		if err := dbconn.Close(db); err != nil {
			t.Errorf("dbtest: close sqlite %s: %v", target.DSN, err)
		}
	})
	return DB{Name: dbconn.SQLite, Target: target, Gorm: db}
}

// Postgres makes a fresh database on the server named by PACKHOST_TEST_PG_DSN
// and drops it (closing every connection to it) when the test ends. It skips
// the test when PACKHOST_TEST_PG_DSN is unset, and fails it instead when
// PACKHOST_REQUIRE_PG=1.
func Postgres(t testing.TB) DB {
	t.Helper()
	adminDSN := os.Getenv(EnvPGDSN)
	if adminDSN == "" {
		if os.Getenv(EnvRequirePG) == "1" {
			t.Fatalf("dbtest: %s=1 but %s is not set; run the tests through scripts/with-postgres.sh", EnvRequirePG, EnvPGDSN)
		}
		t.Skipf("dbtest: %s not set; skipping the PostgreSQL half (run through scripts/with-postgres.sh)", EnvPGDSN)
	}
	return PostgresAt(t, adminDSN)
}

// PostgresAt makes a fresh database on the server reached by adminDSN (a
// role that may create databases) and drops it when the test ends.
func PostgresAt(t testing.TB, adminDSN string) DB {
	t.Helper()
	admin, err := adminDB(adminDSN)
	if err != nil {
		t.Fatalf("dbtest: %v", err)
	}
	name, err := randomName()
	if err != nil {
		t.Fatalf("dbtest: %v", err)
	}
	dsn, err := withDatabase(adminDSN, name)
	if err != nil {
		t.Fatalf("dbtest: %s: %v", EnvPGDSN, err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// template0 accepts no connections, so concurrent CREATE DATABASE calls
	// never fail with "source database is being accessed by other users".
	if err := admin.WithContext(ctx).Exec("CREATE DATABASE " + quoteIdent(name) + " TEMPLATE template0 ENCODING 'UTF8'").Error; err != nil {
		t.Fatalf("dbtest: create database %s on %s: %v", name, dbconn.Redact(adminDSN), err)
	}
	// Cleanups run last-in first-out: the connection below closes first,
	// then the database is dropped, forcing out any connection a pack left.
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := admin.WithContext(ctx).Exec("DROP DATABASE IF EXISTS " + quoteIdent(name) + " WITH (FORCE)").Error; err != nil {
			t.Errorf("dbtest: drop database %s on %s: %v", name, dbconn.Redact(adminDSN), err)
		}
	})

	target := dbconn.Target{Driver: dbconn.Postgres, DSN: dsn}
	db, err := dbconn.Open(target)
	if err != nil {
		t.Fatalf("dbtest: %v", err)
	}
	t.Cleanup(func() {
		if err := dbconn.Close(db); err != nil {
			t.Errorf("dbtest: close postgres %s: %v", name, err)
		}
	})
	return DB{Name: dbconn.Postgres, Target: target, Gorm: db}
}

// The admin connection is shared by every test of the binary and never
// closed: it lives as long as the process.
var (
	adminMu  sync.Mutex
	adminDBs = map[string]*gorm.DB{}
)

func adminDB(dsn string) (*gorm.DB, error) {
	adminMu.Lock()
	defer adminMu.Unlock()
	if db, ok := adminDBs[dsn]; ok {
		return db, nil
	}
	db, err := dbconn.Open(dbconn.Target{Driver: dbconn.Postgres, DSN: dsn})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", EnvPGDSN, err)
	}
	adminDBs[dsn] = db
	return db, nil
}

func randomName() (string, error) {
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("random database name: %w", err)
	}
	return "t_" + hex.EncodeToString(b), nil
}

// withDatabase returns dsn with its database replaced by name.
func withDatabase(dsn, name string) (string, error) {
	u, err := url.Parse(dsn)
	if err != nil {
		return "", fmt.Errorf("not a URL: %w", err)
	}
	if u.Scheme != "postgres" && u.Scheme != "postgresql" {
		return "", fmt.Errorf("%q: expected a postgres:// URL", dbconn.Redact(dsn))
	}
	u.Path = "/" + name
	u.RawPath = ""
	q := u.Query()
	q.Del("dbname") // a dbname parameter would override the path
	u.RawQuery = q.Encode()
	return u.String(), nil
}

func quoteIdent(s string) string {
	return `"` + strings.ReplaceAll(s, `"`, `""`) + `"`
}
