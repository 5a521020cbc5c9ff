// Package sdktest is what a pack author calls from `go test`. It runs the
// pack in-process behind the same gRPC adapters the host talks to, on real
// databases: an SQLite file always, and PostgreSQL when a server is given
// (PACKHOST_TEST_PG_DSN; without it the PostgreSQL half is skipped, and
// says so).
//
//	func TestDescribe(t *testing.T)     { sdktest.CheckDescribe(t, pack) }
//	func TestUpgradePaths(t *testing.T) { sdktest.CheckUpgradePaths(t, pack, sdktest.Releases("dist")) }
//
// Failures are reported at the author's line, not inside the kit. The kit
// is quiet under `go test -v`; set PACKHOST_SDKTEST_LOG=debug (or info,
// warn...) to see the pack's own log.
package sdktest

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"testing"

	"github.com/hashicorp/go-hclog"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/test/bufconn"

	"github.com/packhost/packhost/internal/dbtest"
	"github.com/packhost/packhost/internal/meta"
	"github.com/packhost/packhost/internal/packerr"
	"github.com/packhost/packhost/internal/packpb"
	"github.com/packhost/packhost/internal/packrt"
	"github.com/packhost/packhost/internal/tablestate"
	"github.com/packhost/packhost/internal/wire"
	"github.com/packhost/packhost/plugins/sdk"
)

// EnvPostgres names a PostgreSQL server on which the kit may create and
// drop databases (a URL like postgres://postgres@127.0.0.1:5432/postgres).
// When it is unset, the PostgreSQL half of each check is skipped with a
// message naming it.
const EnvPostgres = dbtest.EnvPGDSN

// EnvLog, set to an hclog level (debug, info, ...), shows the pack's log
// on stderr; unset, the kit prints nothing of its own.
const EnvLog = "PACKHOST_SDKTEST_LOG"

// Database is one fresh database a check runs on.
type Database = dbtest.DB

// ForEachDatabase runs fn on a fresh SQLite database and on a fresh
// PostgreSQL database, as subtests "on sqlite" and "on postgres". Without
// EnvPostgres the PostgreSQL subtest is skipped, saying which variable to
// set (it fails instead when PACKHOST_REQUIRE_PG=1).
func ForEachDatabase(t *testing.T, fn func(t *testing.T, db Database)) {
	t.Helper()
	t.Run("on sqlite", func(t *testing.T) {
		t.Helper()
		fn(t, dbtest.SQLite(t))
	})
	t.Run("on postgres", func(t *testing.T) {
		t.Helper()
		dsn := os.Getenv(EnvPostgres)
		switch {
		case dsn != "":
			fn(t, dbtest.PostgresAt(t, dsn))
		case os.Getenv(dbtest.EnvRequirePG) == "1":
			t.Fatalf("sdktest: %s=1 but %s is not set", dbtest.EnvRequirePG, EnvPostgres)
		default:
			t.Skipf("sdktest: %s is not set, so this check did not run on PostgreSQL; set it to a server where the kit may create databases, such as postgres://postgres@127.0.0.1:5432/postgres", EnvPostgres)
		}
	})
}

// freshLike makes another fresh database of db's kind.
func freshLike(t testing.TB, db Database) Database {
	t.Helper()
	if db.Name == "postgres" {
		return dbtest.PostgresAt(t, os.Getenv(EnvPostgres))
	}
	return dbtest.SQLite(t)
}

// Conn is a pack running in-process on one database, reached through the
// real gRPC service.
type Conn struct {
	t      testing.TB
	client packpb.PackClient
}

// Start serves pack on db for the rest of the test. A zero Database starts
// the pack without one (Describe and the SQLite history still work).
func Start(t testing.TB, pack sdk.Pack, db Database) *Conn {
	t.Helper()
	if db.Gorm != nil {
		if err := meta.Ensure(context.Background(), db.Gorm); err != nil {
			t.Fatalf("sdktest: %v", err)
		}
	}
	spec := sdk.Spec(pack)
	if err := spec.Validate(); err != nil {
		t.Fatalf("sdktest: start %s: %v", pack.ID, err)
	}
	srv, closeDB := packrt.NewServer(spec, packLogger(pack.ID), db.Target, db.Target.Driver != "")
	// The pack's gRPC service on an in-memory listener: the adapters the
	// host uses, without go-plugin's process handling (or its log).
	lis := bufconn.Listen(1 << 20)
	gs := grpc.NewServer()
	if err := (&wire.Plugin{Impl: srv}).GRPCServer(nil, gs); err != nil {
		t.Fatalf("sdktest: %v", err)
	}
	go func() { _ = gs.Serve(lis) }()
	conn, err := grpc.NewClient("passthrough:///"+pack.ID,
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		gs.Stop()
		closeDB()
		t.Fatalf("sdktest: connect to %s: %v", pack.ID, err)
	}
	t.Cleanup(func() {
		_ = conn.Close()
		gs.Stop()
		closeDB()
	})
	raw, err := (&wire.Plugin{}).GRPCClient(context.Background(), nil, conn)
	if err != nil {
		t.Fatalf("sdktest: %v", err)
	}
	return &Conn{t: t, client: raw.(packpb.PackClient)}
}

func packLogger(id string) hclog.Logger {
	level := os.Getenv(EnvLog)
	if level == "" {
		return hclog.NewNullLogger()
	}
	return hclog.New(&hclog.LoggerOptions{Name: id, Output: os.Stderr, Level: hclog.LevelFromString(level)})
}

// TableState is one table's state as the host would see it.
type TableState struct {
	Name             string
	InstalledVersion int
	CodeVersion      int
	// State is ok, missing, outdated, newer, version_mismatch or drift.
	State string
	// MatchedVersion is the version found, for version_mismatch.
	MatchedVersion int
	// Schema is the canonical text of the live table.
	Schema string
	Detail string
	Diff   string
}

// Check returns each table's state.
func (c *Conn) Check(ctx context.Context) ([]TableState, error) {
	resp, err := c.client.CheckSchema(ctx, &packpb.CheckSchemaRequest{})
	if err != nil {
		return nil, packerr.FromStatus(err)
	}
	var out []TableState
	for _, t := range resp.Tables {
		out = append(out, TableState{
			Name: t.Name, InstalledVersion: int(t.InstalledVersion), CodeVersion: int(t.CodeVersion),
			State: tablestate.Name(t.State), MatchedVersion: int(t.MatchedVersion), Schema: t.LiveSchema, Detail: t.Detail, Diff: t.Diff,
		})
	}
	return out, nil
}

// Upgrade runs the pack's upgrade of every table, as `host run --update-db`
// does. Errors match the sdk sentinels with errors.Is.
func (c *Conn) Upgrade(ctx context.Context) error {
	stream, err := c.client.Upgrade(ctx, &packpb.UpgradeRequest{})
	if err != nil {
		return packerr.FromStatus(err)
	}
	for {
		_, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return packerr.FromStatus(err)
		}
	}
}

// Schemas returns the schema text of every version of every table, as the
// pack's steps make them on an empty database of the dialect ("sqlite",
// or "postgres" on a Conn started on PostgreSQL): what `host pack build`
// records in the release's manifest. schemas[table][i] is version i+1.
func (c *Conn) Schemas(ctx context.Context, dialect string) (map[string][]string, error) {
	resp, err := c.client.History(ctx, &packpb.HistoryRequest{Dialects: []string{dialect}})
	if err != nil {
		return nil, packerr.FromStatus(err)
	}
	out := map[string][]string{}
	for _, t := range resp.Tables {
		out[t.Table] = t.Schemas
	}
	return out, nil
}

// AtVersion returns a copy of pack whose tables stop at version v (tables
// with fewer steps keep all of theirs), without first-install functions.
func AtVersion(pack sdk.Pack, v int) sdk.Pack {
	versions := map[string]int{}
	for _, t := range pack.Tables {
		versions[t.Name] = min(v, len(t.Steps))
	}
	return AtVersions(pack, versions)
}

// AtVersions returns a copy of pack with each table at the version given
// (a table not given, or at 0, is left out), without first-install
// functions: the pack as a release that had those versions shipped it.
func AtVersions(pack sdk.Pack, versions map[string]int) sdk.Pack {
	out := pack
	out.Tables = nil
	for _, t := range pack.Tables {
		v := min(versions[t.Name], len(t.Steps))
		if v <= 0 {
			continue
		}
		t.Create = nil
		t.Steps = t.Steps[:v]
		out.Tables = append(out.Tables, t)
	}
	return out
}
