package cli_test

import (
	"context"
	"encoding/json"
	"os"
	"strings"
	"testing"

	"github.com/packhost/packhost/host/report"
	"github.com/packhost/packhost/internal/dbconn"
	"github.com/packhost/packhost/internal/dbtest"
	"github.com/packhost/packhost/internal/meta"
	"github.com/packhost/packhost/internal/packtest"
	"github.com/packhost/packhost/internal/tablestate"
)

// site is a system directory on one test database, reached through the
// host binary with --db (SQLite too, so the test can reach the file).
type site struct {
	root string
	db   dbtest.DB
}

func newSite(t *testing.T, db dbtest.DB, pkgs ...string) site {
	t.Helper()
	return site{root: system(t, pkgs...), db: db}
}

func (s site) run(t *testing.T, args ...string) result {
	t.Helper()
	flag := s.db.Target.DSN
	if s.db.Target.Driver == dbconn.SQLite {
		flag = "sqlite:" + flag
	}
	return host(t, append(args, "--root", s.root, "--db", flag)...)
}

func (s site) report(t *testing.T) (report.Report, result) {
	t.Helper()
	r := s.run(t, "status", "--json")
	var rep report.Report
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
		t.Fatalf("status --json: %v\n%s\n%s", err, r.stdout, r.stderr)
	}
	if rep.ExitCode != r.code {
		t.Fatalf("status --json says %d, exited %d", rep.ExitCode, r.code)
	}
	return rep, r
}

func (s site) table(t *testing.T, pack, name string) (report.Table, int) {
	t.Helper()
	rep, _ := s.report(t)
	for _, p := range rep.Packs {
		for _, tb := range p.Tables {
			if p.ID == pack && tb.Name == name {
				return tb, rep.ExitCode
			}
		}
	}
	t.Fatalf("no table %s.%s in %+v", pack, name, rep.Packs)
	return report.Table{}, 0
}

func (s site) setVersion(t *testing.T, pack, table string, v int) {
	t.Helper()
	if err := meta.SetVersion(context.Background(), s.db.Gorm, pack, table, v); err != nil {
		t.Fatal(err)
	}
}

func (s site) registered(t *testing.T, pack, table string) []int {
	t.Helper()
	regs, err := meta.Registered(context.Background(), s.db.Gorm, pack, table)
	if err != nil {
		t.Fatal(err)
	}
	var out []int
	for v := 1; v <= 10; v++ {
		if _, ok := regs[v]; ok {
			out = append(out, v)
		}
	}
	return out
}

func mustExit(t *testing.T, r result, code int) {
	t.Helper()
	if r.code != code {
		t.Fatalf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", r.code, code, r.stdout, r.stderr)
	}
}

// TestUsersCreatedAtVersion3AndRecordedAsAnEarlierOneIsFoundAtVersion3 is
// the case: core's users is made by Create at version 3, so only
// users@3 is registered; a settings row saying 1 or 2 is a
// version_mismatch that names 3 (exit 5), never an upgrade that would run
// steps 2 and 3 on a version-3 table, and `host db repair` records 3.
func TestUsersCreatedAtVersion3AndRecordedAsAnEarlierOneIsFoundAtVersion3(t *testing.T) {
	dbtest.ForEach(t, func(t *testing.T, db dbtest.DB) {
		s := newSite(t, db, "plugins/core")
		mustExit(t, s.run(t, "db", "upgrade", "--no-backup"), 0)
		if got := s.registered(t, "core", "users"); len(got) != 1 || got[0] != 3 {
			t.Fatalf("users registered at %v, want only 3 (Create)", got)
		}
		for _, recorded := range []int{1, 2} {
			s.setVersion(t, "core", "users", recorded)
			tb, code := s.table(t, "core", "users")
			if code != report.ExitSchemaConflict || tb.State != tablestate.VersionMismatch || tb.MatchedVersion != 3 {
				t.Fatalf("recorded %d: %+v exit %d, want version_mismatch matching 3 and exit 5", recorded, tb, code)
			}
			mustExit(t, s.run(t, "db", "upgrade", "--no-backup"), report.ExitSchemaConflict)
			rep := s.run(t, "db", "repair")
			mustExit(t, rep, 0)
			if !strings.Contains(rep.stdout, "version_mismatch") || !strings.Contains(rep.stdout, "recorded version 3") {
				t.Fatalf("repair output:\n%s", rep.stdout)
			}
			if tb, code := s.table(t, "core", "users"); code != 0 || tb.State != tablestate.OK || tb.InstalledVersion != 3 {
				t.Fatalf("after repair: %+v exit %d", tb, code)
			}
		}
	})
}

// TestADatabaseFromBeforeTheRegistryIsVerifiedAgainstTheStepsAndRepaired
// empties schema_registry: each table is checked against the schema its
// pack's steps make, is ok, and repair registers it.
func TestADatabaseFromBeforeTheRegistryIsVerifiedAgainstTheStepsAndRepaired(t *testing.T) {
	dbtest.ForEach(t, func(t *testing.T, db dbtest.DB) {
		s := newSite(t, db, "plugins/core")
		mustExit(t, s.run(t, "db", "upgrade", "--no-backup"), 0)
		if err := db.Gorm.Exec(`DELETE FROM schema_registry`).Error; err != nil {
			t.Fatal(err)
		}
		tb, code := s.table(t, "core", "users")
		if code != 0 || tb.State != tablestate.OK || !strings.Contains(tb.Detail, "schema_registry holds no schema for version 3") {
			t.Fatalf("users without a registry row: %+v exit %d", tb, code)
		}
		s.setVersion(t, "core", "users", 1)
		if tb, code := s.table(t, "core", "users"); code != report.ExitSchemaConflict || tb.MatchedVersion != 3 {
			t.Fatalf("users recorded at 1 without a registry: %+v exit %d, want version_mismatch matching 3", tb, code)
		}
		mustExit(t, s.run(t, "db", "repair"), 0)
		if got := s.registered(t, "core", "users"); len(got) != 1 || got[0] != 3 {
			t.Fatalf("users registered at %v after repair, want [3]", got)
		}
		if got := s.registered(t, "core", "audit_log"); len(got) != 1 || got[0] != 2 {
			t.Fatalf("audit_log registered at %v after repair, want [2]", got)
		}
		rep, _ := s.report(t)
		if rep.ExitCode != 0 {
			t.Fatalf("after repair: exit %d: %+v", rep.ExitCode, rep.Packs)
		}
	})
}

// TestATableRestoredFromAnOlderBackupWithTheNewerVersionRecordedIsRepairedThenUpgraded
// restores notes from a backup taken at version 1 while the settings
// row stays at 3 (as a table-only restore leaves it), from before the
// registry: the true version 1 is found, repaired, and the upgrade runs
// steps 2 and 3 on the restored rows.
func TestATableRestoredFromAnOlderBackupWithTheNewerVersionRecordedIsRepairedThenUpgraded(t *testing.T) {
	dbtest.ForEach(t, func(t *testing.T, db dbtest.DB) {
		root := packtest.NewRoot(t)
		packtest.Install(t, root, packtest.Build(t, "plugins/core", nil))
		packtest.Install(t, root, packtest.Build(t, "testdata/packs/notes", map[string]string{"release": "1"}))
		s := site{root: root, db: db}
		mustExit(t, s.run(t, "db", "upgrade", "--no-backup"), 0)
		if err := db.Gorm.Exec(`INSERT INTO notes (id, body) VALUES (1, 'kept'), (2, 'also kept')`).Error; err != nil {
			t.Fatal(err)
		}
		b := s.run(t, "db", "backup", "--pack", "notes")
		mustExit(t, b, 0)
		backupDir := strings.TrimSpace(b.stdout)
		if _, err := os.Stat(backupDir); err != nil {
			t.Fatalf("backup path %q: %v", backupDir, err)
		}
		packtest.Install(t, root, packtest.Build(t, "testdata/packs/notes", map[string]string{"release": "3"}))
		mustExit(t, s.run(t, "db", "upgrade", "--no-backup"), 0)
		mustExit(t, s.run(t, "db", "restore", backupDir), 0)
		s.setVersion(t, "notes", "notes", 3)
		if err := db.Gorm.Exec(`DELETE FROM schema_registry WHERE table_name = 'notes'`).Error; err != nil {
			t.Fatal(err)
		}

		tb, code := s.table(t, "notes", "notes")
		if code != report.ExitSchemaConflict || tb.State != tablestate.VersionMismatch || tb.MatchedVersion != 1 {
			t.Fatalf("restored table: %+v exit %d, want version_mismatch matching 1 and exit 5", tb, code)
		}
		mustExit(t, s.run(t, "db", "repair"), 0)
		if tb, code := s.table(t, "notes", "notes"); code != report.ExitDBUpdates || tb.State != tablestate.Outdated || tb.InstalledVersion != 1 {
			t.Fatalf("after repair: %+v exit %d, want outdated at 1", tb, code)
		}
		mustExit(t, s.run(t, "db", "upgrade", "--no-backup"), 0)
		if tb, code := s.table(t, "notes", "notes"); code != 0 || tb.State != tablestate.OK || tb.InstalledVersion != 3 {
			t.Fatalf("after the upgrade: %+v exit %d", tb, code)
		}
		var n int64
		db.Gorm.Raw(`SELECT count(*) FROM notes WHERE body LIKE '%kept' AND pinned = false AND author = ''`).Scan(&n)
		if n != 2 {
			t.Fatalf("%d restored rows upgraded, want 2", n)
		}
		if got := s.registered(t, "notes", "notes"); len(got) != 3 {
			t.Fatalf("notes registered at %v, want 1, 2 and 3", got)
		}
	})
}
