package backup_test

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/packhost/packhost/internal/dbtest"
	"github.com/packhost/packhost/internal/packtest"
)

func TestHostDBBackupAndRestoreCommands(t *testing.T) {
	dbtest.ForEach(t, func(t *testing.T, db dbtest.DB) {
		f := newFixture(t, db, nil)
		f.fill(t)
		before := f.state(t)
		host := func(args ...string) packtest.Result {
			return packtest.RunHost(t, append(args, "--root", f.root, "--db", dbFlag(db))...)
		}

		res := host("db", "backup", "--pack", "notes")
		if res.Code != 0 {
			t.Fatalf("db backup exited %d\n%s%s", res.Code, res.Stdout, res.Stderr)
		}
		path := strings.TrimSpace(res.Stdout)
		if filepath.Dir(path) != f.backupsDir() || !strings.HasPrefix(filepath.Base(path), "db-") || !strings.HasSuffix(path, "-notes") {
			t.Fatalf("db backup printed %q, want the path of Updates_Backups/db-<ts>-notes", res.Stdout)
		}

		res = host("db", "backup", "--pack", "nope")
		if res.Code != 1 || !strings.Contains(res.Stderr, "pack nope is not installed or did not start") {
			t.Fatalf("db backup --pack nope: exit %d\n%s", res.Code, res.Stderr)
		}

		f.mutate(t)
		changed := f.state(t)

		// A damaged copy is refused with the reason, and nothing changes.
		bad := copyDir(t, path)
		os.Remove(filepath.Join(bad, "notes.schema.txt"))
		res = host("db", "restore", bad)
		if res.Code != 1 || !strings.Contains(res.Stderr, "notes.schema.txt is missing") || !strings.Contains(res.Stderr, "nothing was restored") {
			t.Fatalf("db restore of a damaged backup: exit %d\n%s%s", res.Code, res.Stdout, res.Stderr)
		}
		if now := f.state(t); !reflect.DeepEqual(changed, now) {
			t.Fatalf("a refused restore changed the database\n%s", changed.diff(now))
		}

		res = host("db", "restore", "--verify", filepath.Base(path))
		if res.Code != 0 || !strings.Contains(res.Stdout, "verified, a backup of pack notes 1.3.0") {
			t.Fatalf("db restore --verify by name: exit %d\n%s%s", res.Code, res.Stdout, res.Stderr)
		}
		if now := f.state(t); !reflect.DeepEqual(changed, now) {
			t.Fatalf("db restore --verify changed the database\n%s", changed.diff(now))
		}

		res = host("db", "restore", path)
		if res.Code != 0 || !strings.Contains(res.Stdout, "restored pack notes from "+path) ||
			!strings.Contains(res.Stdout, "notes                    version 3            3 rows  ok") {
			t.Fatalf("db restore: exit %d\n%s%s", res.Code, res.Stdout, res.Stderr)
		}
		after := f.state(t)
		// Only the notes pack was backed up: core's users stay as mutate
		// left them.
		before.Users = changed.Users
		if !reflect.DeepEqual(before, after) {
			t.Fatalf("db restore did not give back the backed-up state\n%s", before.diff(after))
		}

		res = host("db", "restore")
		if res.Code != 2 {
			t.Fatalf("db restore without a path: exit %d, want 2\n%s", res.Code, res.Stderr)
		}
	})
}
