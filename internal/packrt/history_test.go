package packrt

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"
	"gorm.io/gorm"

	"github.com/packhost/packhost/internal/dbconn"
	"github.com/packhost/packhost/internal/dbtest"
	"github.com/packhost/packhost/internal/meta"
	"github.com/packhost/packhost/internal/packerr"
	"github.com/packhost/packhost/internal/packpb"
	"github.com/packhost/packhost/internal/schema"
)

func sqlStep(summary string, stmts ...string) Step {
	return Step{Summary: summary, Up: func(ctx context.Context, tx *gorm.DB) error {
		for _, s := range stmts {
			if err := tx.Exec(s).Error; err != nil {
				return err
			}
		}
		return nil
	}}
}

func sqlFunc(stmts ...string) StepFunc { return sqlStep("", stmts...).Up }

// notesSpec is a pack with two tables of different lengths; notes has a
// Create that makes its last version in one go.
func notesSpec() Spec {
	return Spec{ID: "notes", Version: "1.2.0", Tables: []Table{
		{Name: "notes", Steps: []Step{
			sqlStep("creates notes", `CREATE TABLE notes (id integer PRIMARY KEY, body text NOT NULL)`),
			sqlStep("adds notes.author", `ALTER TABLE notes ADD COLUMN author varchar(100) NOT NULL DEFAULT ''`,
				`CREATE INDEX idx_notes_author ON notes (author)`),
			sqlStep("adds notes.pinned", `ALTER TABLE notes ADD COLUMN pinned boolean NOT NULL DEFAULT false`),
		}, Create: sqlFunc(`CREATE TABLE notes (id integer PRIMARY KEY, pinned boolean NOT NULL DEFAULT false, body text NOT NULL, author varchar(100) NOT NULL DEFAULT '')`,
			`CREATE INDEX idx_notes_author ON notes (author)`)},
		{Name: "tags", Steps: []Step{
			sqlStep("creates tags", `CREATE TABLE tags (id integer PRIMARY KEY, label text NOT NULL)`),
		}},
	}}
}

func newTestRuntime(t *testing.T, p Spec, db dbtest.DB) *runtime {
	t.Helper()
	if err := meta.Ensure(context.Background(), db.Gorm); err != nil {
		t.Fatal(err)
	}
	rt := newRuntime(p, hclog.NewNullLogger(), db.Target, true)
	t.Cleanup(rt.close)
	return rt
}

func noProgress(*packpb.Progress) error { return nil }

func TestTheHistoryIsEachVersionsSchemaAsTheStepsMakeIt(t *testing.T) {
	dbtest.ForEach(t, func(t *testing.T, db dbtest.DB) {
		ctx := context.Background()
		p := notesSpec()
		h, err := ComputeHistory(ctx, p, db.Name, db.Gorm)
		if err != nil {
			t.Fatal(err)
		}
		notes := h["notes"]
		if len(notes.Schemas) != 3 || len(h["tags"].Schemas) != 1 || !notes.HasCreate || h["tags"].HasCreate {
			t.Fatalf("history %+v, want notes at 3 versions with Create and tags at 1", h)
		}
		// Each version on a real database, step by step.
		for v := 1; v <= 3; v++ {
			for _, s := range p.Tables[0].Steps[v-1 : v] {
				if err := s.Up(ctx, db.Gorm); err != nil {
					t.Fatal(err)
				}
			}
			live, _, err := schema.Describe(ctx, db.Gorm, "notes")
			if err != nil {
				t.Fatal(err)
			}
			if got, _ := notes.At(v); got != live {
				d, _ := schema.Diff(live, got)
				t.Errorf("version %d: history differs from the real table (- real, + history):\n%s", v, d)
			}
		}
		if notes.CreateSchema != notes.Schemas[2] {
			d, _ := schema.Diff(notes.Schemas[2], notes.CreateSchema)
			t.Errorf("Create's schema differs from version 3's:\n%s", d)
		}
		if !strings.Contains(notes.Schemas[1], "index idx_notes_author (author)") || strings.Contains(notes.Schemas[0], "author") {
			t.Errorf("versions 1 and 2 are not what their steps make:\n%s\n%s", notes.Schemas[0], notes.Schemas[1])
		}
	})
}

func TestAReplayOnPostgreSQLLeavesNothingBehindAndSeesTheDatabasesOwnTables(t *testing.T) {
	db := dbtest.Postgres(t)
	ctx := context.Background()
	if err := db.Gorm.Exec(`CREATE TABLE users (id integer PRIMARY KEY)`).Error; err != nil {
		t.Fatal(err)
	}
	p := Spec{ID: "posts", Version: "1.0.0", Tables: []Table{{Name: "posts", Steps: []Step{
		sqlStep("creates posts", `CREATE TABLE posts (id serial PRIMARY KEY, user_id integer NOT NULL REFERENCES users (id))`),
	}}}}
	// Read-only, as `host status` hands the database to packs.
	ro, err := dbconn.Open(dbconn.Target{Driver: dbconn.Postgres, DSN: db.Target.DSN, ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer dbconn.Close(ro)
	h, err := ComputeHistory(ctx, p, dbconn.Postgres, ro)
	if err != nil {
		t.Fatal(err)
	}
	want := "table posts\ncolumn id integer not null default nextval('posts_id_seq'::regclass)\ncolumn user_id integer not null\nprimary key (id)\n"
	if got := h["posts"].Schemas[0]; got != want {
		t.Errorf("history:\n%s\nwant:\n%s", got, want)
	}
	var left []string
	db.Gorm.Raw(`SELECT nspname FROM pg_namespace WHERE nspname LIKE 'packhost_scratch%'
		UNION ALL SELECT relname FROM pg_class WHERE relname LIKE 'posts%'`).Scan(&left)
	if len(left) > 0 {
		t.Fatalf("the replay left %v behind", left)
	}
}

func TestAStepThatFailsOnTheScratchDatabaseIsNamed(t *testing.T) {
	dbtest.ForEach(t, func(t *testing.T, db dbtest.DB) {
		p := notesSpec()
		p.Tables[1].Steps = append(p.Tables[1].Steps, sqlStep("reads a table no one made", `INSERT INTO tags SELECT id, 'x' FROM other_packs_table`))
		_, err := ComputeHistory(context.Background(), p, db.Name, db.Gorm)
		if !errors.Is(err, packerr.ErrStepFailed) {
			t.Fatalf("err = %v, want ErrStepFailed", err)
		}
		for _, w := range []string{"pack notes", "table tags", "step 1 -> 2", "empty scratch " + db.Name + " database", "other_packs_table"} {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("error %q does not say %q", err, w)
			}
		}
	})
}

func TestStepsKnowWhenTheyAreReplayed(t *testing.T) {
	dbtest.ForEach(t, func(t *testing.T, db dbtest.DB) {
		var seen []bool
		p := Spec{ID: "seen", Version: "1.0.0", Tables: []Table{{Name: "seen", Steps: []Step{{Summary: "creates seen", Up: func(ctx context.Context, tx *gorm.DB) error {
			seen = append(seen, Replaying(ctx))
			return tx.Exec(`CREATE TABLE seen (id integer PRIMARY KEY)`).Error
		}}}}}}
		rt := newTestRuntime(t, p, db)
		if _, err := rt.historyOf(context.Background(), db.Name); err != nil {
			t.Fatal(err)
		}
		if err := rt.upgrade(context.Background(), nil, noProgress); err != nil {
			t.Fatal(err)
		}
		if len(seen) != 2 || !seen[0] || seen[1] {
			t.Fatalf("Replaying in the replay and in the upgrade: %v, want [true false]", seen)
		}
	})
}
