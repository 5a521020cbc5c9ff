package updatezip_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/packhost/packhost/host/manifest"
	"github.com/packhost/packhost/host/updatezip"
	"github.com/packhost/packhost/internal/dbconn"
	"github.com/packhost/packhost/internal/dbtest"
	"github.com/packhost/packhost/internal/packtest"
	"github.com/packhost/packhost/internal/ziptest"
)

func TestMain(m *testing.M) { packtest.Main(m) }

// build runs `host pack build` on the notes test pack built with vars.
func build(t *testing.T, out string, vars map[string]string, flags ...string) packtest.Result {
	t.Helper()
	args := append([]string{"pack", "build", "--out", out}, flags...)
	return packtest.RunHost(t, append(args, packtest.Build(t, "testdata/packs/notes", vars))...)
}

func mustBuild(t *testing.T, out string, vars map[string]string, flags ...string) packtest.Result {
	t.Helper()
	res := build(t, out, vars, flags...)
	if res.Code != 0 {
		t.Fatalf("pack build %v: exit %d\n%s%s", vars, res.Code, res.Stdout, res.Stderr)
	}
	return res
}

func TestABuildRecordsEveryVersionsSchemaAndTheLintOfEveryStep(t *testing.T) {
	dbtest.ForEach(t, func(t *testing.T, db dbtest.DB) {
		out := t.TempDir()
		var flags []string
		dialects := "sqlite"
		if db.Name == dbconn.Postgres {
			flags, dialects = []string{"--pg-dsn", db.Target.DSN}, "sqlite and postgres"
		}
		res := mustBuild(t, out, map[string]string{"step4": "notnull", "version": "1.4.0"}, flags...)
		if !strings.Contains(res.Stdout, "history: 1 table(s), 4 version(s), recorded on "+dialects) {
			t.Errorf("the output does not say what was recorded:\n%s", res.Stdout)
		}
		if got := strings.Contains(res.Stdout, updatezip.NoPostgresHistory); got != (db.Name != dbconn.Postgres) {
			t.Errorf("the note about the PostgreSQL history is there: %v, on %s:\n%s", got, db.Name, res.Stdout)
		}
		if !strings.Contains(res.Stdout, "notes 3 -> 4 (adds notes.priority): MF103 adds NOT NULL column notes.priority") {
			t.Errorf("the output does not show the lint:\n%s", res.Stdout)
		}
		m, err := updatezip.ReadManifest(filepath.Join(out, "notes-1.4.0.zip"))
		if err != nil {
			t.Fatal(err)
		}
		s, ok := m.History.Schema("notes", db.Name, 4)
		if !ok || !strings.Contains(s.Text, "column priority integer not null\n") || s.SHA256 != manifest.SchemaSHA256(s.Text) {
			t.Fatalf("history of notes at 4 on %s: %+v", db.Name, s)
		}
		if got := m.Tables(); len(got) != 1 || got["notes"] != 4 {
			t.Errorf("tables %v, want notes at 4", got)
		}
		last := m.DBChanges[len(m.DBChanges)-1]
		if len(last.Lint) != 1 || last.Lint[0].Rule != "MF103" || last.Lint[0].Column != "priority" {
			t.Errorf("the last step's lint: %+v", last.Lint)
		}
		if db.Name == dbconn.Postgres {
			var left []string
			db.Gorm.Raw(`SELECT nspname FROM pg_namespace WHERE nspname LIKE 'packhost_scratch%' UNION ALL
				SELECT relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public'`).Scan(&left)
			if len(left) > 0 {
				t.Errorf("the build left %v in the database", left)
			}
		}
	})
}

func TestAStepThatDropsAColumnWithoutBeingMarkedDestructiveFailsTheBuild(t *testing.T) {
	out := t.TempDir()
	res := build(t, out, map[string]string{"step4": "dropcol", "version": "1.4.0"})
	if res.Code != 1 || !strings.Contains(res.Stderr, `table notes, step 3 -> 4 ("drops notes.pinned"): DS103 drops column notes.pinned`) ||
		!strings.Contains(res.Stderr, "mark each such step Destructive") {
		t.Fatalf("exit %d, want 1 naming DS103 and the step:\n%s%s", res.Code, res.Stdout, res.Stderr)
	}
	if entries, _ := os.ReadDir(out); len(entries) != 0 {
		t.Fatalf("a refused build wrote %v", entries)
	}
}

func TestABuildThatChangesAReleasedHistoryIsRefused(t *testing.T) {
	dist := t.TempDir()
	mustBuild(t, dist, map[string]string{"release": "2"})
	mustBuild(t, dist, nil)
	for _, previous := range []string{dist, filepath.Join(dist, "notes-1.3.0.zip")} {
		out := t.TempDir()
		res := build(t, out, map[string]string{"history": "changed", "version": "2.0.1"}, "--previous", previous)
		if res.Code != 1 || !strings.Contains(res.Stderr, "a released table history was changed") {
			t.Fatalf("--previous %s: exit %d, want 1:\n%s%s", previous, res.Code, res.Stdout, res.Stderr)
		}
		for _, want := range []string{
			"against notes 1.3.0 (notes-1.3.0.zip): table notes, version 2 (sqlite): the schema differs (- released, + this build)",
			"- column author varchar(100) not null default ''",
			"+ column word_count integer not null default 0",
			"table notes, version 3 (sqlite)",
		} {
			if !strings.Contains(res.Stderr, want) {
				t.Errorf("--previous %s: the refusal does not say %q:\n%s", previous, want, res.Stderr)
			}
		}
		if entries, _ := os.ReadDir(out); len(entries) != 0 {
			t.Fatalf("a refused build wrote %v", entries)
		}
	}
	// A release with fewer versions than one before it is refused too.
	res := build(t, t.TempDir(), map[string]string{"release": "2", "version": "1.9.0"}, "--previous", dist)
	if res.Code != 1 || !strings.Contains(res.Stderr, "table notes has 2 versions, the release had 3") {
		t.Fatalf("exit %d, want 1 naming the missing version:\n%s", res.Code, res.Stderr)
	}
	// The next release keeps the history and builds.
	res = mustBuild(t, t.TempDir(), map[string]string{"step4": "notnull", "version": "1.4.0"}, "--previous", dist)
	if !strings.Contains(res.Stdout, "kept the history of the earlier releases 1.2.0 (notes-1.2.0.zip), 1.3.0 (notes-1.3.0.zip)") ||
		!strings.Contains(res.Stdout, "lint of the steps new since 1.3.0: 1 finding(s)") {
		t.Fatalf("the output does not say what was kept:\n%s", res.Stdout)
	}
}

func TestAReleaseWithoutAHistoryIsComparedByItsVersionsAndSaysSo(t *testing.T) {
	dist := t.TempDir()
	bin := []byte("binary")
	m := ziptest.GoodManifest("notes", "1.3.0", bin)
	m.DBChanges = []manifest.DBChange{{Table: "notes", From: 0, To: 1, Summary: "creates notes"}, {Table: "notes", From: 1, To: 2, Summary: "adds notes.author"},
		{Table: "notes", From: 2, To: 3, Summary: "adds notes.pinned"}}
	data, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dist, "pack.json"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	res := mustBuild(t, t.TempDir(), map[string]string{"history": "changed", "version": "2.0.1"}, "--previous", dist)
	if !strings.Contains(res.Stdout, "note: notes 1.3.0 (pack.json): it records no schema history (built by an older host): only its tables' versions were compared") {
		t.Fatalf("the output does not say the history was not compared:\n%s", res.Stdout)
	}
}
