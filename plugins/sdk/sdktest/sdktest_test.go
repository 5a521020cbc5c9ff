package sdktest

import (
	"context"
	"errors"
	"strings"
	"testing"

	"gorm.io/gorm"

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

func TestAPackWhoseCreateMatchesItsStepsHasNoUpgradePathProblems(t *testing.T) {
	pack := twoStepPack(sdk.SQL(`CREATE TABLE kit_items (id integer PRIMARY KEY, size integer NOT NULL DEFAULT 0, name text NOT NULL)`))
	ForEachDatabase(t, func(t *testing.T, db Database) {
		if p := upgradePathProblems(t, pack, db); len(p) > 0 {
			t.Fatalf("unexpected problems: %v", p)
		}
	})
}

func TestACreateThatForgetsAColumnIsCaughtOnEveryPath(t *testing.T) {
	pack := twoStepPack(sdk.SQL(`CREATE TABLE kit_items (id integer PRIMARY KEY, name text NOT NULL)`))
	ForEachDatabase(t, func(t *testing.T, db Database) {
		p := upgradePathProblems(t, pack, db)
		if len(p) != 2 {
			t.Fatalf("want a problem for the paths from versions 0 and 1, got %d: %v", len(p), p)
		}
		if !strings.Contains(p[0], "table kit_items upgraded from version 0") || !strings.Contains(p[0], "+ upgraded: column size") {
			t.Fatalf("problem does not name the table, version and column:\n%s", p[0])
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

func TestDescribeProblemsNameStepsWithoutSummary(t *testing.T) {
	pack := twoStepPack(nil)
	if p := describeProblems(t, pack); len(p) != 0 {
		t.Fatalf("a good pack has problems: %v", p)
	}
	pack.Tables[0].Steps[1].Summary = ""
	p := describeProblems(t, pack)
	if len(p) != 1 || !strings.Contains(p[0], "table kit_items: the step to version 2 has no Summary") {
		t.Fatalf("want the missing summary named, got %v", p)
	}
	pack.Version = "one"
	if p := describeProblems(t, pack); len(p) != 1 || !strings.Contains(p[0], `version "one" is not semver`) {
		t.Fatalf("want the bad version named, got %v", p)
	}
}
