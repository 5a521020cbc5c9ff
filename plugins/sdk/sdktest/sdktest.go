// Package sdktest is what a pack author calls from `go test`. It runs the
// pack in-process behind the same gRPC adapters the host talks to, on real
// databases: an SQLite file always, and PostgreSQL when a server is given.
//
//	func TestUpgradePaths(t *testing.T) { sdktest.CheckUpgradePaths(t, pack) }
package sdktest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"

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
// When it is unset, checks run on SQLite only.
const EnvPostgres = dbtest.EnvPGDSN

// Database is one fresh database a check runs on.
type Database = dbtest.DB

// ForEachDatabase runs fn on a fresh SQLite database and, when EnvPostgres
// is set, on a fresh PostgreSQL database, as subtests "on sqlite" and
// "on postgres".
func ForEachDatabase(t *testing.T, fn func(t *testing.T, db Database)) {
	t.Helper()
	t.Run("on sqlite", func(t *testing.T) { fn(t, dbtest.SQLite(t)) })
	if dsn := os.Getenv(EnvPostgres); dsn != "" {
		t.Run("on postgres", func(t *testing.T) { fn(t, dbtest.PostgresAt(t, dsn)) })
	} else if os.Getenv(dbtest.EnvRequirePG) == "1" {
		t.Fatalf("sdktest: %s=1 but %s is not set", dbtest.EnvRequirePG, EnvPostgres)
	}
}

// Conn is a pack running in-process on one database, reached through the
// real gRPC service.
type Conn struct {
	t      testing.TB
	client packpb.PackClient
}

// Start serves pack on db for the rest of the test. A zero Database starts
// the pack without one (Describe still works).
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
	srv, closeDB := packrt.NewServer(spec, hclog.NewNullLogger(), db.Target, db.Target.Driver != "")
	client, server := plugin.TestPluginGRPCConn(t, false, wire.PluginSet(srv))
	t.Cleanup(func() {
		_ = client.Close()
		server.Stop()
		closeDB()
	})
	raw, err := client.Dispense(wire.PluginName)
	if err != nil {
		t.Fatalf("sdktest: dispense: %v", err)
	}
	return &Conn{t: t, client: raw.(packpb.PackClient)}
}

// TableState is one table's state as the host would see it.
type TableState struct {
	Name             string
	InstalledVersion int
	CodeVersion      int
	// State is ok, missing, outdated, newer, version_mismatch or drift.
	State string
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
			State: tablestate.Name(t.State), Schema: t.LiveSchema, Detail: t.Detail, Diff: t.Diff,
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

// AtVersion returns a copy of pack whose tables stop at version v (tables
// with fewer steps keep all of theirs), without first-install functions:
// the pack as it was released when its tables were at v.
func AtVersion(pack sdk.Pack, v int) sdk.Pack {
	out := pack
	out.Tables = make([]sdk.Table, len(pack.Tables))
	for i, t := range pack.Tables {
		t.Create = nil
		if v < len(t.Steps) {
			t.Steps = t.Steps[:v]
		}
		out.Tables[i] = t
	}
	// A table with no steps is not a table yet.
	kept := out.Tables[:0]
	for _, t := range out.Tables {
		if len(t.Steps) > 0 {
			kept = append(kept, t)
		}
	}
	out.Tables = kept
	return out
}

// CheckUpgradePaths proves that upgrading from every earlier version of
// every table gives the same schema as a fresh install: for each version v
// from 0 (running every step from the first, also when the table has a
// Create function) to the latest minus one, it installs the pack as it was
// at v on an empty database, upgrades it with the current pack, and
// compares each table's schema text with that of a fresh install. It runs
// on SQLite and, when EnvPostgres is set, on PostgreSQL.
func CheckUpgradePaths(t *testing.T, pack sdk.Pack) {
	t.Helper()
	ForEachDatabase(t, func(t *testing.T, fresh Database) {
		for _, p := range upgradePathProblems(t, pack, fresh) {
			t.Error(p)
		}
	})
}

// upgradePathProblems returns one message per table and start version whose
// upgrade does not end at the fresh install's schema.
func upgradePathProblems(t testing.TB, pack sdk.Pack, fresh Database) []string {
	t.Helper()
	ctx := context.Background()
	maxV := 0
	for _, tb := range pack.Tables {
		maxV = max(maxV, len(tb.Steps))
	}
	want := upgradeAndRead(t, pack, fresh)
	var problems []string
	for v := 0; v < maxV; v++ {
		if v == 0 && !hasCreate(pack) {
			continue // the fresh install above already ran every step
		}
		var db Database
		if fresh.Name == "postgres" {
			db = dbtest.PostgresAt(t, os.Getenv(EnvPostgres))
		} else {
			db = dbtest.SQLite(t)
		}
		upgrade := pack
		if v == 0 {
			// From nothing: every step from the first, not Create.
			upgrade = AtVersion(pack, maxV)
		} else if err := Start(t, AtVersion(pack, v), db).Upgrade(ctx); err != nil {
			t.Fatalf("install %s with its tables at version %d: %v", pack.ID, v, err)
		}
		got := upgradeAndRead(t, upgrade, db)
		for _, name := range sortedKeys(want) {
			if got[name] != want[name] {
				problems = append(problems, fmt.Sprintf("table %s upgraded from version %d differs from a fresh install:\n%s",
					name, min(v, tableVersion(pack, name)), lineDiff(want[name], got[name])))
			}
		}
	}
	return problems
}

func hasCreate(p sdk.Pack) bool {
	for _, t := range p.Tables {
		if t.Create != nil {
			return true
		}
	}
	return false
}

func tableVersion(p sdk.Pack, name string) int {
	for _, t := range p.Tables {
		if t.Name == name {
			return len(t.Steps)
		}
	}
	return 0
}

// upgradeAndRead upgrades pack on db and returns each table's schema text,
// failing the test unless every table ends ok.
func upgradeAndRead(t testing.TB, pack sdk.Pack, db Database) map[string]string {
	t.Helper()
	ctx := context.Background()
	c := Start(t, pack, db)
	if err := c.Upgrade(ctx); err != nil {
		t.Fatalf("upgrade %s: %v", pack.ID, err)
	}
	states, err := c.Check(ctx)
	if err != nil {
		t.Fatalf("check %s: %v", pack.ID, err)
	}
	out := map[string]string{}
	for _, s := range states {
		if s.State != "ok" {
			t.Fatalf("after upgrade, table %s is %s (%s)", s.Name, s.State, s.Detail)
		}
		out[s.Name] = s.Schema
	}
	return out
}

func sortedKeys(m map[string]string) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// lineDiff shows the lines of a fresh install (-) and of the upgrade (+)
// that differ.
func lineDiff(fresh, upgraded string) string {
	in := func(lines []string, l string) bool {
		for _, x := range lines {
			if x == l {
				return true
			}
		}
		return false
	}
	a, b := strings.Split(fresh, "\n"), strings.Split(upgraded, "\n")
	var out []string
	for _, l := range a {
		if !in(b, l) {
			out = append(out, "- fresh:    "+l)
		}
	}
	for _, l := range b {
		if !in(a, l) {
			out = append(out, "+ upgraded: "+l)
		}
	}
	return strings.Join(out, "\n")
}
