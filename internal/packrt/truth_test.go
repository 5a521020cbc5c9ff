package packrt

import (
	"context"
	"errors"
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/packhost/packhost/internal/dbtest"
	"github.com/packhost/packhost/internal/meta"
	"github.com/packhost/packhost/internal/packerr"
	"github.com/packhost/packhost/internal/packpb"
	"github.com/packhost/packhost/internal/schema"
	"github.com/packhost/packhost/internal/tablestate"
)

// state reads one table's status as CheckSchema reports it.
func state(t *testing.T, rt *runtime, table string) *packpb.TableStatus {
	t.Helper()
	sts, err := rt.check(context.Background(), []string{table})
	if err != nil {
		t.Fatal(err)
	}
	return sts[0]
}

func registeredVersions(t *testing.T, db dbtest.DB, table string) []int {
	t.Helper()
	regs, err := meta.Registered(context.Background(), db.Gorm, "notes", table)
	if err != nil {
		t.Fatal(err)
	}
	var out []int
	for v := range regs {
		out = append(out, v)
	}
	sort.Ints(out)
	return out
}

func setVersion(t *testing.T, db dbtest.DB, pack, table string, v int) {
	t.Helper()
	if err := meta.SetVersion(context.Background(), db.Gorm, pack, table, v); err != nil {
		t.Fatal(err)
	}
}

func wantState(t *testing.T, st *packpb.TableStatus, state string, matched int, words ...string) {
	t.Helper()
	if tablestate.Name(st.State) != state || int(st.MatchedVersion) != matched {
		t.Fatalf("table %s: %s matching %d (%s), want %s matching %d", st.Name, tablestate.Name(st.State), st.MatchedVersion, st.Detail, state, matched)
	}
	for _, w := range words {
		if !strings.Contains(st.Detail, w) {
			t.Errorf("detail %q does not say %q", st.Detail, w)
		}
	}
}

func TestATableMadeByCreateAndRecordedAsAnEarlierVersionIsFoundAtItsTrueVersion(t *testing.T) {
	dbtest.ForEach(t, func(t *testing.T, db dbtest.DB) {
		ctx := context.Background()
		rt := newTestRuntime(t, notesSpec(), db)
		if err := rt.upgrade(ctx, nil, noProgress); err != nil {
			t.Fatal(err)
		}
		if got := registeredVersions(t, db, "notes"); !reflect.DeepEqual(got, []int{3}) {
			t.Fatalf("Create registered versions %v, want [3]", got)
		}
		for _, recorded := range []int{1, 2} {
			setVersion(t, db, "notes", "notes", recorded)
			wantState(t, state(t, rt, "notes"), tablestate.VersionMismatch, 3, "recorded version is", "that of version 3")
			if err := rt.upgrade(ctx, nil, noProgress); !errors.Is(err, packerr.ErrVersionMismatch) {
				t.Fatalf("upgrade of a mismatched table: %v, want ErrVersionMismatch", err)
			}
			res, err := rt.repair(ctx, nil)
			if err != nil {
				t.Fatal(err)
			}
			if res[0].Before != int32(recorded) || res[0].After != 3 {
				t.Fatalf("repair: %+v, want %d -> 3", res[0], recorded)
			}
			wantState(t, state(t, rt, "notes"), tablestate.OK, 0)
		}
	})
}

func TestADatabaseFromBeforeTheRegistryIsCheckedAgainstTheStepsAndRepairFillsTheRegistry(t *testing.T) {
	dbtest.ForEach(t, func(t *testing.T, db dbtest.DB) {
		ctx := context.Background()
		p := notesSpec()
		p.Tables[0].Steps = p.Tables[0].Steps[:1] // notes at version 1
		p.Tables[0].Create = nil
		if err := newTestRuntime(t, p, db).upgrade(ctx, nil, noProgress); err != nil {
			t.Fatal(err)
		}
		// Restored from before the registry existed: no registry rows,
		// and the settings row says 3.
		if err := db.Gorm.Exec(`DELETE FROM schema_registry`).Error; err != nil {
			t.Fatal(err)
		}
		setVersion(t, db, "notes", "notes", 3)
		rt := newTestRuntime(t, notesSpec(), db)
		wantState(t, state(t, rt, "notes"), tablestate.VersionMismatch, 1, "that of version 1")
		wantState(t, state(t, rt, "tags"), tablestate.OK, 0, "schema_registry holds no schema for version 1", "host db repair")
		res, err := rt.repair(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		if res[0].After != 1 || !strings.Contains(res[1].Detail, "registered the schema of version 1") {
			t.Fatalf("repair: %+v", res)
		}
		if got := registeredVersions(t, db, "tags"); !reflect.DeepEqual(got, []int{1}) {
			t.Errorf("tags registered at %v after repair, want [1]", got)
		}
		wantState(t, state(t, rt, "notes"), tablestate.Outdated, 0)
		wantState(t, state(t, rt, "tags"), tablestate.OK, 0)
		if err := rt.upgrade(ctx, nil, noProgress); err != nil {
			t.Fatal(err)
		}
		wantState(t, state(t, rt, "notes"), tablestate.OK, 0)
		if got := registeredVersions(t, db, "notes"); !reflect.DeepEqual(got, []int{1, 2, 3}) {
			t.Errorf("notes registered at %v after the upgrade, want [1 2 3]", got)
		}
	})
}

func TestATableWithoutARecordedVersionThatIsOneOfOursIsAMismatch(t *testing.T) {
	dbtest.ForEach(t, func(t *testing.T, db dbtest.DB) {
		ctx := context.Background()
		p := notesSpec()
		for _, s := range p.Tables[0].Steps[:2] {
			if err := s.Up(ctx, db.Gorm); err != nil {
				t.Fatal(err)
			}
		}
		rt := newTestRuntime(t, p, db)
		wantState(t, state(t, rt, "notes"), tablestate.VersionMismatch, 2, "no version is recorded for table notes")
		if _, err := rt.repair(ctx, nil); err != nil {
			t.Fatal(err)
		}
		wantState(t, state(t, rt, "notes"), tablestate.Outdated, 0)
	})
}

func TestAChangedHistoryIsDriftAndStopsTheUpgradeBeforeAnythingRuns(t *testing.T) {
	dbtest.ForEach(t, func(t *testing.T, db dbtest.DB) {
		ctx := context.Background()
		released := notesSpec()
		released.Tables[0].Create = nil // every version registered
		if err := newTestRuntime(t, released, db).upgrade(ctx, nil, noProgress); err != nil {
			t.Fatal(err)
		}
		before, _, _ := schema.Describe(ctx, db.Gorm, "notes")
		// The next build removed step 2 and added another at the end:
		// still three steps, another version 3.
		changed := notesSpec()
		s := changed.Tables[0].Steps
		changed.Tables[0].Steps = []Step{s[0], s[2], sqlStep("adds notes.word_count", `ALTER TABLE notes ADD COLUMN word_count integer NOT NULL DEFAULT 0`)}
		changed.Tables[0].Create = nil
		rt := newTestRuntime(t, changed, db)
		// At the code's version and as registered: status stays cheap and
		// says ok; the upgrade verifies and refuses.
		wantState(t, state(t, rt, "notes"), tablestate.OK, 0)
		err := rt.upgrade(ctx, nil, noProgress)
		if !errors.Is(err, packerr.ErrDrift) {
			t.Fatalf("upgrade: %v, want ErrDrift", err)
		}
		for _, w := range []string{"table notes", "steps make a different version 3", "a released step was changed, removed or reordered"} {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("error %q does not say %q", err, w)
			}
		}
		if after, _, _ := schema.Describe(ctx, db.Gorm, "notes"); after != before {
			t.Fatalf("a refused upgrade changed the table")
		}
		// Below the code's version, status finds it too.
		setVersion(t, db, "notes", "notes", 2)
		if err := db.Gorm.Exec(`ALTER TABLE notes DROP COLUMN pinned`).Error; err != nil {
			t.Fatal(err)
		}
		st := state(t, rt, "notes")
		wantState(t, st, tablestate.Drift, 0, "steps make a different version 2")
		if !strings.Contains(st.Diff, "- column pinned") || !strings.Contains(st.Diff, "+ column author") || st.DiffVersion != 2 {
			t.Errorf("diff against the code's version 2 (%d):\n%s", st.DiffVersion, st.Diff)
		}
	})
}

func TestDriftIsShownAgainstTheNearestVersion(t *testing.T) {
	dbtest.ForEach(t, func(t *testing.T, db dbtest.DB) {
		ctx := context.Background()
		p := notesSpec()
		rt := newTestRuntime(t, p, db)
		if err := rt.upgrade(ctx, nil, noProgress); err != nil {
			t.Fatal(err)
		}
		// Version 1 plus a column of no version, recorded as 3.
		if err := db.Gorm.Exec(`DROP TABLE notes`).Error; err != nil {
			t.Fatal(err)
		}
		if err := p.Tables[0].Steps[0].Up(ctx, db.Gorm); err != nil {
			t.Fatal(err)
		}
		if err := db.Gorm.Exec(`ALTER TABLE notes ADD COLUMN surprise integer`).Error; err != nil {
			t.Fatal(err)
		}
		st := state(t, rt, "notes")
		wantState(t, st, tablestate.Drift, 0, "matches no registered version nor any version", "differs from version 1 (recorded: 3)")
		if st.DiffVersion != 1 || !reflect.DeepEqual(st.DriftColumns, []string{"surprise"}) {
			t.Errorf("diff against %d naming %v, want version 1 naming [surprise]:\n%s", st.DiffVersion, st.DriftColumns, st.Diff)
		}
	})
}

func TestVersionsWithOneSchemaAreNamedAndTheLowestIsRecorded(t *testing.T) {
	dbtest.ForEach(t, func(t *testing.T, db dbtest.DB) {
		ctx := context.Background()
		p := notesSpec()
		p.Tables[0].Create = nil
		// Version 4 only fills rows: its schema is version 3's.
		p.Tables[0].Steps = append(p.Tables[0].Steps, sqlStep("pins every note", `UPDATE notes SET pinned = true`))
		p.Tables[0].Steps = append(p.Tables[0].Steps, sqlStep("adds notes.rank", `ALTER TABLE notes ADD COLUMN rank integer NOT NULL DEFAULT 0`))
		rt := newTestRuntime(t, p, db)
		if err := rt.upgrade(ctx, nil, noProgress); err != nil {
			t.Fatal(err)
		}
		if err := db.Gorm.Exec(`ALTER TABLE notes DROP COLUMN rank`).Error; err != nil {
			t.Fatal(err)
		}
		wantState(t, state(t, rt, "notes"), tablestate.VersionMismatch, 3, "versions 3 and 4 have the same schema: repair records 3, the lowest")
	})
}
