package upgrade_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/packhost/packhost/host/report"
	"github.com/packhost/packhost/internal/dbconn"
	"github.com/packhost/packhost/internal/dbtest"
	"github.com/packhost/packhost/internal/meta"
	"github.com/packhost/packhost/internal/packtest"
	"github.com/packhost/packhost/internal/schema"
	"github.com/packhost/packhost/internal/tablestate"
)

func TestMain(m *testing.M) { packtest.Main(m) }

// system is one system directory on one test database with core and the
// notes test pack installed.
type system struct {
	root string
	db   dbtest.DB
}

func (s system) args(cmd ...string) []string {
	flag := s.db.Target.DSN
	if s.db.Target.Driver == dbconn.SQLite {
		flag = "sqlite:" + flag
	}
	return append(cmd, "--root", s.root, "--db", flag)
}

func (s system) host(t *testing.T, cmd ...string) packtest.Result {
	t.Helper()
	return packtest.RunHost(t, s.args(cmd...)...)
}

func newSystem(t *testing.T, db dbtest.DB, notesVars map[string]string) system {
	t.Helper()
	root := t.TempDir()
	packtest.Install(t, root, packtest.Build(t, "plugins/core", nil))
	packtest.Install(t, root, packtest.Build(t, "testdata/packs/notes", notesVars))
	return system{root: root, db: db}
}

func (s system) status(t *testing.T) (report.Report, packtest.Result) {
	t.Helper()
	res := s.host(t, "status", "--json")
	var r report.Report
	if err := json.Unmarshal([]byte(res.Stdout), &r); err != nil {
		t.Fatalf("status --json: %v\nstdout:\n%s\nstderr:\n%s", err, res.Stdout, res.Stderr)
	}
	if r.ExitCode != res.Code {
		t.Fatalf("status --json says exit_code %d but exited %d", r.ExitCode, res.Code)
	}
	return r, res
}

func table(t *testing.T, r report.Report, pack, name string) report.Table {
	t.Helper()
	for _, p := range r.Packs {
		for _, tb := range p.Tables {
			if p.ID == pack && tb.Name == name {
				return tb
			}
		}
	}
	t.Fatalf("no table %s.%s in report %+v", pack, name, r)
	return report.Table{}
}

// dbState is what a failed or refused upgrade must leave as it was.
type dbState struct {
	version  int
	versions []int
	live     string
}

func readState(t *testing.T, db dbtest.DB, pack, tbl string) dbState {
	t.Helper()
	ctx := context.Background()
	v, err := meta.InstalledVersion(ctx, db.Gorm, pack, tbl)
	if err != nil {
		t.Fatal(err)
	}
	regs, err := meta.Registered(ctx, db.Gorm, pack, tbl)
	if err != nil {
		t.Fatal(err)
	}
	var vs []int
	for k := range regs {
		vs = append(vs, k)
	}
	sort.Ints(vs)
	live, _, err := schema.Describe(ctx, db.Gorm, tbl)
	if err != nil {
		t.Fatal(err)
	}
	return dbState{version: v, versions: vs, live: live}
}

func (a dbState) equal(b dbState) bool { return reflect.DeepEqual(a, b) }

func jsonOf(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

func mustCode(t *testing.T, res packtest.Result, want int) {
	t.Helper()
	if res.Code != want {
		t.Fatalf("exit code %d, want %d\nstdout:\n%s\nstderr:\n%s", res.Code, want, res.Stdout, res.Stderr)
	}
}

func TestAFreshDatabaseNeedsEveryTableAndUpgradeInstallsThem(t *testing.T) {
	dbtest.ForEach(t, func(t *testing.T, db dbtest.DB) {
		s := newSystem(t, db, nil)
		r, _ := s.status(t)
		if r.ExitCode != report.ExitDBUpdates {
			t.Fatalf("fresh database: exit %d, want 4", r.ExitCode)
		}
		for _, name := range []string{"users", "audit_log"} {
			if st := table(t, r, "core", name).State; st != tablestate.Missing {
				t.Fatalf("core.%s is %s, want missing", name, st)
			}
		}
		mustCode(t, s.host(t, "db", "upgrade"), 0)
		r, _ = s.status(t)
		if r.ExitCode != 0 {
			t.Fatalf("after upgrade: exit %d", r.ExitCode)
		}
		if got := readState(t, db, "notes", "notes"); got.version != 3 || jsonOf(got.versions) != "[1,2,3]" {
			t.Fatalf("notes after upgrade: %+v, want version 3 with registry rows 1,2,3", got)
		}
	})
}

func TestAStepThatFailsHalfwayLeavesTableVersionAndRegistryAsBeforeIt(t *testing.T) {
	dbtest.ForEach(t, func(t *testing.T, db dbtest.DB) {
		// Release 1 first, so the failing step 1 -> 2 starts from data.
		s := newSystem(t, db, map[string]string{"release": "1"})
		mustCode(t, s.host(t, "db", "upgrade"), 0)
		if err := db.Gorm.Exec(`INSERT INTO notes (id, body) VALUES (1, 'keep me')`).Error; err != nil {
			t.Fatal(err)
		}
		before := readState(t, db, "notes", "notes")
		packtest.Install(t, s.root, packtest.Build(t, "testdata/packs/notes", map[string]string{"release": "3", "failAt": "2"}))

		res := s.host(t, "db", "upgrade", "--no-backup")
		mustCode(t, res, 1)
		for _, want := range []string{"pack notes", "table notes", "step 1 -> 2", "simulated failure", "rolled back"} {
			if !strings.Contains(res.Stderr, want) {
				t.Errorf("error output does not name %q:\n%s", want, res.Stderr)
			}
		}
		after := readState(t, db, "notes", "notes")
		if !after.equal(before) {
			t.Fatalf("a failed step changed the table:\nbefore %+v\nafter  %+v", before, after)
		}
		var n int64
		db.Gorm.Raw(`SELECT count(*) FROM notes WHERE body = 'keep me'`).Scan(&n)
		if n != 1 {
			t.Fatalf("the row written before the failed upgrade is gone")
		}
	})
}

func TestAColumnAddedByHandIsDriftUntilItIsRemoved(t *testing.T) {
	dbtest.ForEach(t, func(t *testing.T, db dbtest.DB) {
		s := newSystem(t, db, nil)
		mustCode(t, s.host(t, "db", "upgrade"), 0)
		if err := db.Gorm.Exec(`ALTER TABLE notes ADD COLUMN surprise integer`).Error; err != nil {
			t.Fatal(err)
		}
		r, _ := s.status(t)
		tb := table(t, r, "notes", "notes")
		if r.ExitCode != report.ExitSchemaConflict || tb.State != tablestate.Drift {
			t.Fatalf("want drift and exit 5, got %s and exit %d", tb.State, r.ExitCode)
		}
		if jsonOf(tb.DriftColumns) != `["surprise"]` || !strings.Contains(tb.Diff, "+ column surprise integer") {
			t.Fatalf("the diff does not name the column: %v\n%s", tb.DriftColumns, tb.Diff)
		}
		text := s.host(t, "status")
		if !strings.Contains(text.Stdout, "+ column surprise integer") {
			t.Fatalf("the human report does not show the diff:\n%s", text.Stdout)
		}
		res := s.host(t, "db", "upgrade", "--no-backup")
		mustCode(t, res, report.ExitSchemaConflict)

		if err := db.Gorm.Exec(`ALTER TABLE notes DROP COLUMN surprise`).Error; err != nil {
			t.Fatal(err)
		}
		r, _ = s.status(t)
		if r.ExitCode != 0 {
			t.Fatalf("after removing the column: exit %d, %+v", r.ExitCode, table(t, r, "notes", "notes"))
		}
	})
}

func TestAStoredVersionChangedByHandIsAMismatchThatRepairFixes(t *testing.T) {
	dbtest.ForEach(t, func(t *testing.T, db dbtest.DB) {
		s := newSystem(t, db, nil)
		mustCode(t, s.host(t, "db", "upgrade"), 0)
		if err := meta.SetVersion(context.Background(), db.Gorm, "notes", "notes", 2); err != nil {
			t.Fatal(err)
		}
		r, res := s.status(t)
		tb := table(t, r, "notes", "notes")
		if r.ExitCode != report.ExitSchemaConflict || tb.State != tablestate.VersionMismatch || tb.MatchedVersion != 3 {
			t.Fatalf("want version_mismatch matching 3 and exit 5, got %+v exit %d", tb, r.ExitCode)
		}
		if !strings.Contains(strings.Join(r.Hints, " "), "host db repair") {
			t.Fatalf("no hint to run host db repair: %v\n%s", r.Hints, res.Stdout)
		}
		rep := s.host(t, "db", "repair")
		mustCode(t, rep, 0)
		if !strings.Contains(rep.Stdout, "version_mismatch  2       3") {
			t.Fatalf("repair does not show before and after:\n%s", rep.Stdout)
		}
		r, _ = s.status(t)
		if r.ExitCode != 0 {
			t.Fatalf("after repair: exit %d", r.ExitCode)
		}
	})
}

func TestRepairRefusesDriftAndSaysWhy(t *testing.T) {
	dbtest.ForEach(t, func(t *testing.T, db dbtest.DB) {
		s := newSystem(t, db, nil)
		mustCode(t, s.host(t, "db", "upgrade"), 0)
		if err := db.Gorm.Exec(`ALTER TABLE notes ADD COLUMN surprise integer`).Error; err != nil {
			t.Fatal(err)
		}
		before := readState(t, db, "notes", "notes")
		rep := s.host(t, "db", "repair")
		mustCode(t, rep, report.ExitSchemaConflict)
		if !strings.Contains(rep.Stdout, "not repaired: the live schema matches no registered version") {
			t.Fatalf("repair does not say why:\n%s", rep.Stdout)
		}
		if after := readState(t, db, "notes", "notes"); !after.equal(before) {
			t.Fatalf("repair changed a drifted table: %+v -> %+v", before, after)
		}
	})
}

func TestAStoredVersionNewerThanTheCodeIsFatalAndLeftUntouched(t *testing.T) {
	dbtest.ForEach(t, func(t *testing.T, db dbtest.DB) {
		s := newSystem(t, db, nil)
		mustCode(t, s.host(t, "db", "upgrade"), 0)
		if err := meta.SetVersion(context.Background(), db.Gorm, "notes", "notes", 7); err != nil {
			t.Fatal(err)
		}
		before := readState(t, db, "notes", "notes")
		r, _ := s.status(t)
		if tb := table(t, r, "notes", "notes"); r.ExitCode != report.ExitSchemaConflict || tb.State != tablestate.Newer {
			t.Fatalf("want newer and exit 5, got %s exit %d", tb.State, r.ExitCode)
		}
		res := s.host(t, "db", "upgrade", "--no-backup")
		mustCode(t, res, report.ExitSchemaConflict)
		if after := readState(t, db, "notes", "notes"); !after.equal(before) {
			t.Fatalf("an upgrade touched a newer table: %+v -> %+v", before, after)
		}
	})
}

func TestAnOlderReleaseUpgradesStepByStepToTheCodeVersion(t *testing.T) {
	dbtest.ForEach(t, func(t *testing.T, db dbtest.DB) {
		s := newSystem(t, db, map[string]string{"release": "1"})
		mustCode(t, s.host(t, "db", "upgrade"), 0)
		packtest.Install(t, s.root, packtest.Build(t, "testdata/packs/notes", map[string]string{"release": "3"}))
		r, _ := s.status(t)
		if tb := table(t, r, "notes", "notes"); r.ExitCode != report.ExitDBUpdates || tb.State != tablestate.Outdated || tb.InstalledVersion != 1 {
			t.Fatalf("want outdated from 1 and exit 4, got %+v exit %d", tb, r.ExitCode)
		}
		mustCode(t, s.host(t, "db", "upgrade", "--no-backup"), 0)
		if got := readState(t, db, "notes", "notes"); got.version != 3 {
			t.Fatalf("notes at %d after upgrade, want 3", got.version)
		}
	})
}

func TestTwoHostsUpgradingOneDatabaseRunEveryStepOnce(t *testing.T) {
	dbtest.ForEach(t, func(t *testing.T, db dbtest.DB) {
		// Two system directories (two machines) on one database; on SQLite
		// they share the database file, as two hosts on one machine would.
		a := newSystem(t, db, nil)
		b := newSystem(t, db, nil)
		var wg sync.WaitGroup
		results := make([]packtest.Result, 2)
		for i, s := range []system{a, b} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				results[i] = packtest.RunHost(t, s.args("db", "upgrade")...)
			}()
		}
		wg.Wait()
		for _, res := range results {
			mustCode(t, res, 0)
		}
		counts := map[string]int{}
		for _, s := range []system{a, b} {
			data, err := os.ReadFile(filepath.Join(s.root, "packs", "notes", "bin", "steps.log"))
			if err != nil && !os.IsNotExist(err) {
				t.Fatal(err)
			}
			for _, line := range strings.Fields(strings.ReplaceAll(string(data), " ", ":")) {
				counts[line]++
			}
		}
		want := map[string]int{"notes:1": 1, "notes:2": 1, "notes:3": 1}
		if jsonOf(counts) != jsonOf(want) {
			t.Fatalf("steps ran %v, want each exactly once: %v", counts, want)
		}
	})
}

func TestATableThatExistsWithoutARecordedVersionIsAConflict(t *testing.T) {
	dbtest.ForEach(t, func(t *testing.T, db dbtest.DB) {
		s := newSystem(t, db, nil)
		if err := db.Gorm.Exec(`CREATE TABLE notes (id integer PRIMARY KEY, mine text)`).Error; err != nil {
			t.Fatal(err)
		}
		r, _ := s.status(t)
		tb := table(t, r, "notes", "notes")
		if r.ExitCode != report.ExitSchemaConflict || tb.State != tablestate.Drift || !strings.Contains(tb.Detail, "no version is recorded") {
			t.Fatalf("want drift (exit 5) naming the unrecorded table, got %+v exit %d", tb, r.ExitCode)
		}
		before := readState(t, db, "notes", "notes")
		mustCode(t, s.host(t, "db", "upgrade", "--no-backup"), report.ExitSchemaConflict)
		if after := readState(t, db, "notes", "notes"); !after.equal(before) {
			t.Fatalf("the upgrade touched a table it does not own: %+v -> %+v", before, after)
		}
	})
}

func TestTwoPacksClaimingOneTableAreBothStopped(t *testing.T) {
	dbtest.ForEach(t, func(t *testing.T, db dbtest.DB) {
		s := newSystem(t, db, nil)
		packtest.Install(t, s.root, packtest.Build(t, "testdata/packs/notes", map[string]string{"id": "notes-copy", "table": "notes"}))
		r, res := s.status(t)
		if r.ExitCode != report.ExitError || !strings.Contains(res.Stdout, "table notes is declared by both notes and notes-copy") {
			t.Fatalf("want exit 1 naming the clash, got %d:\n%s", r.ExitCode, res.Stdout)
		}
		for _, p := range r.Packs {
			if (p.ID == "notes" || p.ID == "notes-copy") && p.Running {
				t.Fatalf("pack %s still runs while it claims a table another pack claims", p.ID)
			}
		}
		mustCode(t, s.host(t, "db", "upgrade", "--no-backup"), 1)
		var n int64
		db.Gorm.Raw(`SELECT count(*) FROM pack_settings WHERE pack_id IN ('notes', 'notes-copy')`).Scan(&n)
		if n != 0 {
			t.Fatalf("a clashing pack wrote %d settings", n)
		}
	})
}

func TestRunRefusesToServeWhileAProblemStands(t *testing.T) {
	dbtest.ForEach(t, func(t *testing.T, db dbtest.DB) {
		s := newSystem(t, db, nil)
		mustCode(t, s.host(t, "db", "upgrade"), 0)
		if err := os.MkdirAll(filepath.Join(s.root, "trusted_keys"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(s.root, "trusted_keys", "broken.pub"), []byte("not a key\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		res := s.host(t, "run", "--addr", "127.0.0.1:0")
		mustCode(t, res, 1)
		if !strings.Contains(res.Stderr, "not serving") || !strings.Contains(res.Stdout, "broken.pub") {
			t.Fatalf("run does not say why it will not serve:\nstdout:\n%s\nstderr:\n%s", res.Stdout, res.Stderr)
		}
	})
}
