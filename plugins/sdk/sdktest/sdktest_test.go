package sdktest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"gorm.io/gorm"

	"github.com/packhost/packhost/host/manifest"
	"github.com/packhost/packhost/host/updatezip"
	"github.com/packhost/packhost/internal/dbtest"
	"github.com/packhost/packhost/internal/schema"
	"github.com/packhost/packhost/plugins/sdk"
)

func twoStepPack(create func(context.Context, *gorm.DB) error) sdk.Pack {
	return sdk.Pack{ID: "kit", Version: "1.0.0", Tables: []sdk.Table{{
		Name: "kit_items",
		Steps: []sdk.Step{
			{Summary: "create", Up: sdk.SQL(`CREATE TABLE kit_items (id integer PRIMARY KEY, name text NOT NULL)`)},
			{Summary: "add size", Up: sdk.SQL(`ALTER TABLE kit_items ADD COLUMN size integer NOT NULL DEFAULT 0`)},
		},
		Create: create,
	}}}
}

func defaults() options { return options{rows: DefaultRows} }

func TestAPackWhoseCreateMatchesItsStepsHasNoUpgradePathProblems(t *testing.T) {
	pack := twoStepPack(sdk.SQL(`CREATE TABLE kit_items (id integer PRIMARY KEY, size integer NOT NULL DEFAULT 0, name text NOT NULL)`))
	ForEachDatabase(t, func(t *testing.T, db Database) {
		if p := pathProblems(t, pack, db, defaults(), nil); len(p) > 0 {
			t.Fatalf("unexpected problems: %v", p)
		}
	})
}

func TestACreateThatForgetsAColumnIsCaughtOnEveryPath(t *testing.T) {
	pack := twoStepPack(sdk.SQL(`CREATE TABLE kit_items (id integer PRIMARY KEY, name text NOT NULL)`))
	ForEachDatabase(t, func(t *testing.T, db Database) {
		p := pathProblems(t, pack, db, defaults(), nil)
		if len(p) != 2 {
			t.Fatalf("want a problem for the paths from nothing and from version 1, got %d: %v", len(p), p)
		}
		if !strings.Contains(p[0], "table kit_items upgraded from nothing, every step instead of Create differs from a fresh install") ||
			!strings.Contains(p[0], "+ column size") {
			t.Fatalf("problem does not name the table, the path and the column:\n%s", p[0])
		}
	})
}

func TestAFailingStepComesBackAsErrStepFailedAndChangesNothing(t *testing.T) {
	pack := twoStepPack(nil)
	pack.Tables[0].Steps[1].Up = func(ctx context.Context, tx *gorm.DB) error {
		if err := tx.Exec(`ALTER TABLE kit_items ADD COLUMN size integer NOT NULL DEFAULT 0`).Error; err != nil {
			return err
		}
		return errors.New("disk on fire")
	}
	ForEachDatabase(t, func(t *testing.T, db Database) {
		ctx := context.Background()
		c := Start(t, pack, db)
		err := c.Upgrade(ctx)
		if !errors.Is(err, sdk.ErrStepFailed) {
			t.Fatalf("want ErrStepFailed, got %v", err)
		}
		for _, want := range []string{"pack kit", "table kit_items", "step 1 -> 2", "disk on fire"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error %q does not name %q", err, want)
			}
		}
		states, err := c.Check(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if s := states[0]; s.InstalledVersion != 1 || s.State != "outdated" || strings.Contains(s.Schema, "size") {
			t.Fatalf("after the failed step the table should be at version 1 without size, got %+v", s)
		}
	})
}

func TestDescribeProblemsNameStepsWithoutSummaryAndUnmarkedDestructiveSteps(t *testing.T) {
	pack := twoStepPack(nil)
	if p := describeProblems(t, pack); len(p) != 0 {
		t.Fatalf("a good pack has problems: %v", p)
	}
	pack.Tables[0].Steps[1].Summary = ""
	p := describeProblems(t, pack)
	if len(p) != 1 || !strings.Contains(p[0], "table kit_items: the step to version 2 has no Summary") {
		t.Fatalf("want the missing summary named, got %v", p)
	}
	pack = twoStepPack(nil)
	pack.Tables[0].Steps = append(pack.Tables[0].Steps, sdk.Step{Summary: "drops kit_items.size", Up: sdk.SQL(`ALTER TABLE kit_items DROP COLUMN size`)})
	p = describeProblems(t, pack)
	if len(p) != 1 || !strings.Contains(p[0], `table kit_items, step 2 -> 3 ("drops kit_items.size"): DS103 drops column kit_items.size`) {
		t.Fatalf("want the unmarked destructive step named with DS103, got %v", p)
	}
	pack.Tables[0].Steps[2].Destructive = true
	if p := describeProblems(t, pack); len(p) != 0 {
		t.Fatalf("a destructive step marked so is a problem: %v", p)
	}
	pack.Version = "one"
	if p := describeProblems(t, pack); len(p) != 1 || !strings.Contains(p[0], `version "one" is not semver`) {
		t.Fatalf("want the bad version named, got %v", p)
	}
}

// notesWithCreatedAt is the 1.1.0: a step that adds a column with
// a non-constant default, which SQLite accepts on an empty table only.
func notesWithCreatedAt() sdk.Pack {
	return sdk.Pack{ID: "notes", Version: "1.1.0", Tables: []sdk.Table{{Name: "notes", Steps: []sdk.Step{
		{Summary: "creates notes", Up: sdk.SQL(`CREATE TABLE notes (id integer PRIMARY KEY, body text NOT NULL)`)},
		{Summary: "adds notes.created_at", Up: sdk.SQL(`ALTER TABLE notes ADD COLUMN created_at timestamp DEFAULT CURRENT_TIMESTAMP`)},
	}}}}
}

func TestTheKitCatchesAStepThatFailsOnlyOnATableWithRows(t *testing.T) {
	ForEachDatabase(t, func(t *testing.T, db Database) {
		p := pathProblems(t, notesWithCreatedAt(), db, defaults(), nil)
		if db.Name == "postgres" {
			if len(p) > 0 {
				t.Fatalf("PostgreSQL adds such a column to a table with rows; problems: %v", p)
			}
			return
		}
		if len(p) != 1 || !strings.Contains(p[0], "upgrade from version 1: to notes 1.1.0, with rows in every table") ||
			!strings.Contains(p[0], "Cannot add a column with non-constant default") {
			t.Fatalf("want the failing step on a table with rows named, got %v", p)
		}
		// Empty tables, as the kit had them, hide it.
		o := defaults()
		o.rows = 0
		if p := pathProblems(t, notesWithCreatedAt(), dbtest.SQLite(t), o, nil); len(p) != 0 {
			t.Fatalf("without rows: %v", p)
		}
	})
}

func TestGeneratedRowsFitEveryColumnTypeAndTheAuthorsFillRuns(t *testing.T) {
	pack := sdk.Pack{ID: "types", Version: "1.0.0", Tables: []sdk.Table{{Name: "everything", Steps: []sdk.Step{
		{Summary: "creates everything", Up: func(ctx context.Context, tx *gorm.DB) error {
			blob, js, uuid := "blob", "text", "text"
			if tx.Dialector.Name() == "postgres" {
				blob, js, uuid = "bytea", "jsonb", "uuid"
			}
			return tx.Exec(`CREATE TABLE everything (id integer PRIMARY KEY, small smallint NOT NULL, big bigint, price numeric(6,2) NOT NULL,
				ratio double precision, name varchar(3) NOT NULL UNIQUE, body text, on_off boolean NOT NULL, at timestamp NOT NULL, day date,
				data ` + blob + `, doc ` + js + `, ref ` + uuid + `)`).Error
		}},
		{Summary: "makes big NOT NULL", Up: sdk.SQL(`UPDATE everything SET big = 0 WHERE big IS NULL`)},
	}}}}
	ForEachDatabase(t, func(t *testing.T, db Database) {
		filled := map[string]int{}
		o := defaults()
		o.fill = func(t testing.TB, db *gorm.DB, table string, version int) {
			var n int64
			db.Raw(`SELECT count(*) FROM ` + table).Scan(&n)
			filled[fmt.Sprintf("%s@%d", table, version)] = int(n)
		}
		if p := pathProblems(t, pack, db, o, nil); len(p) > 0 {
			t.Fatalf("problems: %v", p)
		}
		if !reflect.DeepEqual(filled, map[string]int{"everything@1": DefaultRows}) {
			t.Fatalf("fill saw %v, want everything at version 1 with %d generated rows", filled, DefaultRows)
		}
	})
}

func TestGeneratedRowsGoAfterTheRowsAStepSeeds(t *testing.T) {
	pack := twoStepPack(nil)
	pack.Tables[0].Steps[0].Up = sdk.SQL(`CREATE TABLE kit_items (id integer PRIMARY KEY, name varchar(2) NOT NULL UNIQUE)`,
		`INSERT INTO kit_items (id, name) VALUES (1, 'a'), (2, 'b')`)
	ForEachDatabase(t, func(t *testing.T, db Database) {
		if p := pathProblems(t, pack, db, defaults(), nil); len(p) > 0 {
			t.Fatalf("problems: %v", p)
		}
	})
}

// twoTables has tables of different histories: a at 3, b at 2, where b's
// first step reads a column a gained at version 2. Its releases (in
// testdata/twotables) shipped a at 1, then a at 2 with b at 1.
func twoTables() sdk.Pack {
	return sdk.Pack{ID: "twotables", Version: "2.0.0", Tables: []sdk.Table{
		{Name: "a", Steps: []sdk.Step{
			{Summary: "creates a (id, body)", Up: sdk.SQL(`CREATE TABLE a (id integer PRIMARY KEY, body text NOT NULL)`)},
			{Summary: "adds a.flag", Up: sdk.SQL(`ALTER TABLE a ADD COLUMN flag integer NOT NULL DEFAULT 0`)},
			{Summary: "adds a.note", Up: sdk.SQL(`ALTER TABLE a ADD COLUMN note text`)},
		}},
		{Name: "b", Steps: []sdk.Step{
			{Summary: "creates b from the flagged rows of a", Up: sdk.SQL(`CREATE TABLE b (id integer PRIMARY KEY)`,
				`INSERT INTO b (id) SELECT id FROM a WHERE flag = 1`)},
			{Summary: "adds b.label", Up: sdk.SQL(`ALTER TABLE b ADD COLUMN label text NOT NULL DEFAULT ''`)},
		}},
	}}
}

func TestAPackWithTwoTablesOfDifferentHistoriesIsTestedAlongItsReleasedPaths(t *testing.T) {
	releases, err := loadReleases(twoTables(), []string{"testdata/twotables"})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, p := range paths(twoTables(), releases) {
		var stages []string
		for _, s := range p.stages {
			stages = append(stages, versionsText(s))
		}
		got = append(got, p.name+": "+strings.Join(stages, " / "))
	}
	want := []string{
		"from release 1.0.0: a 1",
		"from release 1.1.0: a 2, b 1",
		"through releases 1.0.0, 1.1.0: a 1 / a 2, b 1",
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("paths:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	ForEachDatabase(t, func(t *testing.T, db Database) {
		if p := pathProblems(t, twoTables(), db, defaults(), releases); len(p) > 0 {
			t.Fatalf("the released paths fail: %v", p)
		}
		// Cutting every table at one version makes a with b at 1, which no
		// release shipped and b's first step cannot run on.
		p := pathProblems(t, twoTables(), db, defaults(), nil)
		if len(p) != 1 || !strings.Contains(p[0], "upgrade from version 1: install with its tables at a 1, b 1") {
			t.Fatalf("want the unreleased cut to fail, got %v", p)
		}
	})
}

func TestAHistoryChangedSinceAReleaseIsCaught(t *testing.T) {
	ForEachDatabase(t, func(t *testing.T, db Database) {
		ctx := context.Background()
		dir := t.TempDir()
		// Release 1.1.0 as `host pack build` recorded it.
		released := notesWithCreatedAt()
		released.Tables[0].Steps[1].Up = sdk.SQL(`ALTER TABLE notes ADD COLUMN created_at timestamp`)
		schemas, err := Start(t, released, db).Schemas(ctx, db.Name)
		if err != nil {
			t.Fatal(err)
		}
		m := &manifest.Manifest{ID: "notes", Version: "1.1.0", History: &manifest.History{Format: schema.Format, Dialects: []string{db.Name}},
			Binaries: map[string]manifest.Binary{"linux/amd64": {Path: "bin/notes", SHA256: strings.Repeat("0", 64)}}}
		for i, s := range schemas["notes"] {
			m.History.Schemas = append(m.History.Schemas, manifest.TableSchema{Table: "notes", Version: i + 1, Dialect: db.Name, SHA256: manifest.SchemaSHA256(s), Text: s})
		}
		data, _ := m.Marshal()
		if err := os.WriteFile(filepath.Join(dir, "pack.json"), data, 0o644); err != nil {
			t.Fatal(err)
		}
		// 1.2.0 removed step 2 and added another: as many steps.
		changed := released
		changed.Version = "1.2.0"
		changed.Tables = []sdk.Table{{Name: "notes", Steps: []sdk.Step{released.Tables[0].Steps[0],
			{Summary: "adds notes.word_count", Up: sdk.SQL(`ALTER TABLE notes ADD COLUMN word_count integer NOT NULL DEFAULT 0`)}}}}
		releases, err := loadReleases(changed, []string{dir})
		if err != nil {
			t.Fatal(err)
		}
		p := pathProblems(t, changed, db, defaults(), releases)
		if len(p) == 0 || !strings.Contains(p[0], "table notes, version 2: the steps make another schema than release 1.1.0 recorded") ||
			!strings.Contains(p[0], "- column created_at") || !strings.Contains(p[0], "+ column word_count") {
			t.Fatalf("want the changed version 2 named with its diff, got %v", p)
		}
	})
}

func TestReleasesOfOtherPacksAndLaterVersionsAreIgnored(t *testing.T) {
	all, err := updatezip.LoadReleases("testdata/twotables")
	if err != nil {
		t.Fatal(err)
	}
	pack := twoTables()
	pack.Version = "1.0.5"
	got, err := loadReleases(pack, []string{"testdata/twotables"})
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 3 || len(got) != 1 || got[0].Manifest.Version != "1.0.0" {
		t.Fatalf("releases for twotables 1.0.5: %d of %d", len(got), len(all))
	}
}

// The fixtures below run only in a child `go test` process started by the
// tests after them, which read what `go test -v` prints.

const envFixture = "SDKTEST_FIXTURE"

func TestFixture(t *testing.T) {
	switch os.Getenv(envFixture) {
	case "":
		t.Skip("a fixture for the tests that read go test's output")
	case "failing":
		CheckUpgradePaths(t, twoStepPack(sdk.SQL(`CREATE TABLE kit_items (id integer PRIMARY KEY)`))) // fixture: author's line
	case "passing":
		CheckUpgradePaths(t, twoStepPack(nil))
	}
}

// child runs TestFixture in a child process with the environment given.
func child(t *testing.T, fixture string, env ...string) string {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestFixture$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), envFixture+"="+fixture)
	cmd.Env = append(cmd.Env, env...)
	out, _ := cmd.CombinedOutput()
	return string(out)
}

func authorsLine(t *testing.T) string {
	t.Helper()
	src, err := os.ReadFile("sdktest_test.go")
	if err != nil {
		t.Fatal(err)
	}
	for i, l := range strings.Split(string(src), "\n") {
		if strings.HasSuffix(l, "// fixture: author's line") {
			return fmt.Sprintf("sdktest_test.go:%d:", i+1)
		}
	}
	t.Fatal("no fixture line")
	return ""
}

func TestFailuresPointAtTheAuthorsLine(t *testing.T) {
	out := child(t, "failing", EnvPostgres+"=", dbtest.EnvRequirePG+"=")
	if !strings.Contains(out, "--- FAIL: TestFixture/on_sqlite") {
		t.Fatalf("the fixture did not fail:\n%s", out)
	}
	line := authorsLine(t)
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, "differs from a fresh install") && !strings.Contains(l, line) {
			t.Errorf("a failure is reported at %q, not at the author's %s", strings.TrimSpace(l), line)
		}
	}
	if !strings.Contains(out, line+" table kit_items upgraded") {
		t.Errorf("no failure reported at the author's %s:\n%s", line, out)
	}
}

func TestWithoutAServerThePostgreSQLHalfIsSkippedByName(t *testing.T) {
	out := child(t, "passing", EnvPostgres+"=", dbtest.EnvRequirePG+"=")
	if !strings.Contains(out, "--- SKIP: TestFixture/on_postgres") || !strings.Contains(out, "PACKHOST_TEST_PG_DSN is not set") {
		t.Fatalf("the PostgreSQL half does not say it was skipped and why:\n%s", out)
	}
	if !strings.Contains(out, "--- PASS: TestFixture/on_sqlite") {
		t.Fatalf("the SQLite half did not pass:\n%s", out)
	}
}

func TestTheKitIsQuietUnderVerboseUnlessAsked(t *testing.T) {
	out := child(t, "passing", EnvPostgres+"=", dbtest.EnvRequirePG+"=")
	if strings.Contains(out, "[DEBUG]") || strings.Contains(out, "[INFO]") {
		t.Fatalf("go test -v shows log lines:\n%s", out)
	}
	out = child(t, "passing", EnvPostgres+"=", dbtest.EnvRequirePG+"=", EnvLog+"=info")
	if !strings.Contains(out, "upgrading table") {
		t.Fatalf("%s=info does not show the pack's log:\n%s", EnvLog, out)
	}
}
