package main

import (
	"context"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gorm.io/gorm"
	"time"

	"github.com/packhost/packhost/plugins/sdk/sdktest"
)

func TestEveryUpgradePathMatchesAFreshInstall(t *testing.T) {
	sdktest.CheckUpgradePaths(t, pack)
}

func TestVersion2SplitsTheNamesOfExistingEntries(t *testing.T) {
	sdktest.ForEachDatabase(t, func(t *testing.T, db sdktest.Database) {
		ctx := context.Background()
		if err := sdktest.Start(t, sdktest.AtVersion(pack, 1), db).Upgrade(ctx); err != nil {
			t.Fatal(err)
		}
		for _, name := range []string{"Ada King Lovelace", "Grace Hopper", "Cher", "  "} {
			if err := db.Gorm.Exec(`INSERT INTO entries (name, message, created_at) VALUES (?, 'hello', ?)`, name, time.Now()).Error; err != nil {
				t.Fatal(err)
			}
		}
		if err := sdktest.Start(t, pack, db).Upgrade(ctx); err != nil {
			t.Fatal(err)
		}
		var got []struct{ FirstName, LastName string }
		if err := db.Gorm.Raw(`SELECT first_name, last_name FROM entries ORDER BY id`).Scan(&got).Error; err != nil {
			t.Fatal(err)
		}
		want := []struct{ FirstName, LastName string }{{"Ada King", "Lovelace"}, {"Grace", "Hopper"}, {"Cher", ""}, {"", ""}}
		if len(got) != len(want) {
			t.Fatalf("got %d entries, want %d", len(got), len(want))
		}
		for i := range want {
			if got[i] != want[i] {
				t.Errorf("entry %d: got %+v, want %+v", i, got[i], want[i])
			}
		}
	})
}

// The example must stand for what a third-party author can do: it may
// import nothing of packhost but the SDK.
func TestTheExampleImportsNothingOfPackhostButTheSDK(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil || len(files) == 0 {
		t.Fatalf("no Go files: %v", err)
	}
	for _, f := range files {
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		parsed, err := parser.ParseFile(token.NewFileSet(), f, src, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range parsed.Imports {
			path := strings.Trim(imp.Path.Value, `"`)
			if strings.HasPrefix(path, "github.com/packhost/packhost") &&
				path != "github.com/packhost/packhost/plugins/sdk" && path != "github.com/packhost/packhost/plugins/sdk/sdktest" {
				t.Errorf("%s imports %s: a third-party pack may import only plugins/sdk (and sdktest in tests)", f, path)
			}
		}
	}
}

func TestDescribe(t *testing.T) {
	sdktest.CheckDescribe(t, pack)
}

func TestEntriesSurviveABackupAndRestore(t *testing.T) {
	sdktest.CheckBackupRestore(t, pack, func(t *testing.T, db *gorm.DB) {
		for i, name := range []string{"Ada", "Grace"} {
			err := db.Exec(`INSERT INTO entries (first_name, last_name, message, created_at) VALUES (?, ?, ?, ?)`,
				name, "Tester", "line one\nline\ttwo", time.Date(2026, 11, 20, 10, i, 0, 0, time.UTC)).Error
			if err != nil {
				t.Fatal(err)
			}
		}
	})
}
