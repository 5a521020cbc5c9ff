package preflight_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/packhost/packhost/host/manifest"
	"github.com/packhost/packhost/host/report"
	"github.com/packhost/packhost/host/system"
	"github.com/packhost/packhost/host/updatezip"
	"github.com/packhost/packhost/internal/dbconn"
	"github.com/packhost/packhost/internal/dbtest"
	"github.com/packhost/packhost/internal/packtest"
	"github.com/packhost/packhost/internal/ziptest"
)

func TestMain(m *testing.M) { packtest.Main(m) }

// site is a system directory with core and notes 1.3.0 installed from
// zips built by `host pack build`, its tables upgraded and holding rows.
type site struct {
	root string
	db   dbtest.DB
}

func (s site) dbFlag() string {
	if s.db.Target.Driver == dbconn.SQLite {
		return "sqlite:" + s.db.Target.DSN
	}
	return s.db.Target.DSN
}

// host runs a host command on the site; the site's flags go after the
// command's words, before its own flags and arguments.
func (s site) host(t *testing.T, args ...string) packtest.Result {
	t.Helper()
	n := 1
	if args[0] == "pack" || args[0] == "db" {
		n = 2
	}
	full := append(append(append([]string{}, args[:n]...), "--root", s.root, "--db", s.dbFlag()), args[n:]...)
	return packtest.RunHost(t, full...)
}

// build runs `host pack build` on the notes test pack built with vars,
// recording the PostgreSQL history on a PostgreSQL site.
func (s site) build(t *testing.T, vars map[string]string) string {
	t.Helper()
	out := t.TempDir()
	args := []string{"pack", "build", "--out", out}
	if s.db.Name == dbconn.Postgres {
		args = append(args, "--pg-dsn", s.db.Target.DSN)
	}
	res := packtest.RunHost(t, append(args, packtest.Build(t, "testdata/packs/notes", vars))...)
	if res.Code != 0 {
		t.Fatalf("pack build %v: exit %d\n%s%s", vars, res.Code, res.Stdout, res.Stderr)
	}
	zips, _ := filepath.Glob(filepath.Join(out, "*.zip"))
	return zips[0]
}

func newSite(t *testing.T, db dbtest.DB) site {
	t.Helper()
	s := site{root: t.TempDir(), db: db}
	core := packtest.RunHost(t, "pack", "build", "--out", s.root+"/dist", packtest.Build(t, "plugins/core", nil))
	if core.Code != 0 {
		t.Fatalf("build core: %s%s", core.Stdout, core.Stderr)
	}
	notes := s.build(t, nil)
	res := s.host(t, "pack", "install", "--no-backup", filepath.Join(s.root, "dist", "core-1.0.0.zip"), notes)
	if res.Code != 0 {
		t.Fatalf("install core and notes: exit %d\n%s%s", res.Code, res.Stdout, res.Stderr)
	}
	if err := db.Gorm.Exec(`INSERT INTO notes (id, body, author) VALUES (1, 'one', 'ada'), (2, 'two', 'grace')`).Error; err != nil {
		t.Fatal(err)
	}
	return s
}

// pend drops a zip into Updates_Pending.
func (s site) pend(t *testing.T, zip string) {
	t.Helper()
	data, err := os.ReadFile(zip)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(s.root, system.PendingDir, filepath.Base(zip)), data, 0o644); err != nil {
		t.Fatal(err)
	}
}

func (s site) status(t *testing.T) report.Report {
	t.Helper()
	res := s.host(t, "status", "--json")
	var r report.Report
	if err := json.Unmarshal([]byte(res.Stdout), &r); err != nil {
		t.Fatalf("status --json: %v\n%s\n%s", err, res.Stdout, res.Stderr)
	}
	if r.ExitCode != res.Code {
		t.Fatalf("status says exit %d, exited %d", r.ExitCode, res.Code)
	}
	return r
}

// rows reads what must not change: the notes rows and the meta rows.
func (s site) rows(t *testing.T) string {
	t.Helper()
	var out []string
	for _, q := range []string{
		`SELECT id || ' ' || body || ' ' || author FROM notes ORDER BY id`,
		`SELECT pack_id || ' ' || key || ' ' || value FROM pack_settings ORDER BY pack_id, key`,
		`SELECT table_name || ' ' || table_version || ' ' || schema_text FROM schema_registry ORDER BY table_name, table_version`,
	} {
		var rows []string
		if err := s.db.Gorm.Raw(q).Scan(&rows).Error; err != nil {
			t.Fatal(err)
		}
		out = append(out, rows...)
	}
	return strings.Join(out, "\n")
}

// files snapshots the system directory but the database's own files.
func (s site) files(t *testing.T) map[string]string {
	t.Helper()
	snap := ziptest.Snapshot(t, s.root)
	for k := range snap {
		if strings.HasPrefix(k, "data") || strings.HasPrefix(k, "dist") {
			delete(snap, k)
		}
	}
	return snap
}

// wantRefused checks that status shows the problem while the zip is
// pending and that an install refuses it before its backup, changing no
// file and no row.
func (s site) wantRefused(t *testing.T, problem string) {
	t.Helper()
	r := s.status(t)
	if r.ExitCode != report.ExitCodeUpdates || len(r.PendingUpdates) != 1 {
		t.Fatalf("status: exit %d, %d pending", r.ExitCode, len(r.PendingUpdates))
	}
	all := strings.Join(r.PendingUpdates[0].Problems, "\n")
	if !strings.Contains(all, problem) {
		t.Fatalf("status of the pending zip does not show %q; problems:\n%s", problem, all)
	}
	if !strings.Contains(strings.Join(r.Hints, " "), "cannot be installed") {
		t.Errorf("no hint that the zip cannot be installed: %v", r.Hints)
	}
	files, rows := s.files(t), s.rows(t)
	res := s.host(t, "pack", "install")
	if res.Code != 1 || !strings.Contains(res.Stderr, problem) || !strings.Contains(res.Stderr, "nothing was installed") {
		t.Fatalf("install: exit %d, want 1 naming %q:\n%s", res.Code, problem, res.Stderr)
	}
	ziptest.AssertSame(t, files, s.files(t))
	if after := s.rows(t); after != rows {
		t.Errorf("rows changed:\n%s\n->\n%s", rows, after)
	}
	if b, _ := os.ReadDir(filepath.Join(s.root, system.BackupsDir)); len(b) != 0 {
		t.Errorf("a refused install wrote backups: %v", b)
	}
}

// TestAChangedHistoryIsRefusedBeforeAnythingChanges is the 2.0.1:
// the step "adds notes.author" was removed from the middle and "adds
// notes.word_count" added at the end, so the count stayed 3.
func TestAChangedHistoryIsRefusedBeforeAnythingChanges(t *testing.T) {
	dbtest.ForEach(t, func(t *testing.T, db dbtest.DB) {
		s := newSite(t, db)
		s.pend(t, s.build(t, map[string]string{"history": "changed", "version": "2.0.1"}))
		s.wantRefused(t, "table notes, version 3 (installed on this database): the zip's schema differs from the one schema_registry holds")
		r := s.status(t)
		p := r.PendingUpdates[0].Problems[0]
		for _, line := range []string{"- column author", "+ column word_count", "- index idx_notes_author (author)"} {
			if !strings.Contains(p, line) {
				t.Errorf("the problem's diff lacks %q:\n%s", line, p)
			}
		}
		text := s.host(t, "status")
		if !strings.Contains(text.Stdout, "problem: table notes, version 3") || !strings.Contains(text.Stdout, "+ column word_count") {
			t.Errorf("the human status does not show the refusal with its diff:\n%s", text.Stdout)
		}
	})
}

func TestANotNullColumnWithoutDefaultShowsMF103InStatusOfThePendingZip(t *testing.T) {
	dbtest.ForEach(t, func(t *testing.T, db dbtest.DB) {
		s := newSite(t, db)
		s.pend(t, s.build(t, map[string]string{"step4": "notnull", "version": "1.4.0"}))
		res := s.host(t, "status", "--json")
		var raw struct {
			PendingUpdates []struct {
				Problems  []string `json:"problems"`
				DBChanges []struct {
					Table string           `json:"table"`
					From  int              `json:"from"`
					To    int              `json:"to"`
					Lint  []map[string]any `json:"lint"`
				} `json:"db_changes"`
			} `json:"pending_updates"`
		}
		if err := json.Unmarshal([]byte(res.Stdout), &raw); err != nil {
			t.Fatal(err)
		}
		u := raw.PendingUpdates[0]
		if len(u.Problems) != 0 || len(u.DBChanges) != 1 || u.DBChanges[0].From != 3 || u.DBChanges[0].To != 4 {
			t.Fatalf("pending update: %+v, want only the step 3 -> 4 and no problems", u)
		}
		lint := u.DBChanges[0].Lint
		if len(lint) != 1 || lint[0]["rule"] != "MF103" || lint[0]["table"] != "notes" || lint[0]["column"] != "priority" ||
			!strings.Contains(lint[0]["message"].(string), "adds NOT NULL column notes.priority without a default") {
			t.Fatalf("lint: %v, want one MF103 on notes.priority", lint)
		}
		var keys []string
		for k := range lint[0] {
			keys = append(keys, k)
		}
		if len(keys) != 4 {
			t.Errorf("a lint item has keys %v, want rule, table, column, message", keys)
		}
		text := s.host(t, "status")
		if !strings.Contains(text.Stdout, "table notes 3 -> 4: adds notes.priority") || !strings.Contains(text.Stdout, "lint MF103: adds NOT NULL column notes.priority") {
			t.Errorf("the human status does not show the lint:\n%s", text.Stdout)
		}
	})
}

func TestWhatAnInstallWouldRefuseShowsWhileTheZipIsPending(t *testing.T) {
	dbtest.ForEach(t, func(t *testing.T, db dbtest.DB) {
		s := newSite(t, db)
		// Another pack's zip that declares notes.
		copyZip := s.build(t, map[string]string{"id": "notes-copy", "table": "notes"})
		s.pend(t, copyZip)
		s.wantRefused(t, "table notes is also declared by pack notes")
		os.Remove(filepath.Join(s.root, system.PendingDir, filepath.Base(copyZip)))

		// A newer release whose table has fewer versions than the database.
		fewer := s.build(t, map[string]string{"release": "2", "version": "1.9.0"})
		s.pend(t, fewer)
		s.wantRefused(t, "table notes is at version 3 on this database, and notes 1.9.0's code is at version 2: installing it would be a downgrade")
		os.Remove(filepath.Join(s.root, system.PendingDir, filepath.Base(fewer)))

		// A new pack whose table exists already, recorded by no pack.
		if err := db.Gorm.Exec(`CREATE TABLE notes_other (id integer PRIMARY KEY, mine text)`).Error; err != nil {
			t.Fatal(err)
		}
		other := s.build(t, map[string]string{"id": "other"})
		s.pend(t, other)
		s.wantRefused(t, "a table named notes_other exists on this database but no pack records a version of it")
		os.Remove(filepath.Join(s.root, system.PendingDir, filepath.Base(other)))

		// A manifest that says 1.4.0 around the 1.3.0 binary.
		bin := packtest.Build(t, "testdata/packs/notes", nil)
		data, err := os.ReadFile(bin)
		if err != nil {
			t.Fatal(err)
		}
		m := ziptest.GoodManifest("notes", "1.4.0", data)
		m.DependsOn = []string{"core"}
		ziptest.WriteZip(t, filepath.Join(s.root, system.PendingDir, "notes-1.4.0.zip"),
			[]ziptest.Entry{ziptest.ManifestEntry(t, m), {Name: m.Binaries[manifest.Platform()].Path, Data: data, Mode: 0o755}})
		s.wantRefused(t, "binary does not match its manifest: manifest says notes 1.4.0, binary reports notes 1.3.0")
	})
}

// TestAZipWithoutAPostgreSQLHistorySaysWhatIsNotChecked: a PostgreSQL site
// cannot compare a zip built without a PostgreSQL server before the
// install, and says so; an SQLite site can.
func TestAZipWithoutAPostgreSQLHistorySaysWhatIsNotChecked(t *testing.T) {
	dbtest.ForEach(t, func(t *testing.T, db dbtest.DB) {
		s := newSite(t, db)
		out := t.TempDir()
		res := packtest.RunHost(t, "pack", "build", "--out", out, packtest.Build(t, "testdata/packs/notes", map[string]string{"step4": "notnull", "version": "1.4.0"}))
		if res.Code != 0 || !strings.Contains(res.Stdout, "note: "+updatezip.NoPostgresHistory) {
			t.Fatalf("build without a server: exit %d, want the note:\n%s%s", res.Code, res.Stdout, res.Stderr)
		}
		s.pend(t, filepath.Join(out, "notes-1.4.0.zip"))
		r := s.status(t)
		u := r.PendingUpdates[0]
		var want []string
		if db.Name == dbconn.Postgres {
			want = []string{updatezip.NoPostgresHistory}
		}
		if len(u.Problems) != 0 || !reflect.DeepEqual(u.Warnings, want) {
			t.Fatalf("problems %v, warnings %v; want no problem and warnings %v", u.Problems, u.Warnings, want)
		}
	})
}

// TestOnPostgreSQLAChangedHistoryWithoutAPostgreSQLHistoryStopsAtTheUpgrade
// proves what the warning says: the install goes ahead to the new
// version's upgrade, which checks its own steps against the database,
// refuses, and the install is rolled back with nothing changed.
func TestOnPostgreSQLAChangedHistoryWithoutAPostgreSQLHistoryStopsAtTheUpgrade(t *testing.T) {
	s := newSite(t, dbtest.Postgres(t))
	out := t.TempDir()
	res := packtest.RunHost(t, "pack", "build", "--out", out, packtest.Build(t, "testdata/packs/notes", map[string]string{"history": "changed", "version": "2.0.1"}))
	if res.Code != 0 {
		t.Fatalf("build: %s%s", res.Stdout, res.Stderr)
	}
	s.pend(t, filepath.Join(out, "notes-2.0.1.zip"))
	r := s.status(t)
	if u := r.PendingUpdates[0]; len(u.Problems) != 0 || len(u.Warnings) != 1 || u.Warnings[0] != updatezip.NoPostgresHistory {
		t.Fatalf("pending: problems %v warnings %v, want only the warning", u.Problems, u.Warnings)
	}
	rows := s.rows(t)
	packsBefore := ziptest.Snapshot(t, filepath.Join(s.root, "packs"))
	res = s.host(t, "pack", "install")
	if res.Code != 1 || !strings.Contains(res.Stderr, "upgrade the database") || !strings.Contains(res.Stderr, "a released step was changed, removed or reordered") {
		t.Fatalf("install: exit %d, want 1 stopping at the upgrade:\n%s", res.Code, res.Stderr)
	}
	// The test pack logs the steps the rollback's restore runs.
	packsAfter := ziptest.Snapshot(t, filepath.Join(s.root, "packs"))
	delete(packsBefore, "notes/bin/steps.log")
	delete(packsAfter, "notes/bin/steps.log")
	ziptest.AssertSame(t, packsBefore, packsAfter)
	if after := s.rows(t); after != rows {
		t.Errorf("rows changed:\n%s\n->\n%s", rows, after)
	}
	if b, _ := os.ReadDir(filepath.Join(s.root, system.BackupsDir)); len(b) == 0 {
		t.Errorf("no backup was taken before the upgrade that stopped")
	}
	if _, err := os.Stat(filepath.Join(s.root, system.PendingDir, "notes-2.0.1.zip")); err != nil {
		t.Errorf("the zip is no longer pending: %v", err)
	}
}
