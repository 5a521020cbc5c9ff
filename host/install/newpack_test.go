package install

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/packhost/packhost/host/system"
	"github.com/packhost/packhost/internal/crashpoint"
	"github.com/packhost/packhost/internal/dbconn"
	"github.com/packhost/packhost/internal/dbtest"
	"github.com/packhost/packhost/internal/packtest"
	"github.com/packhost/packhost/internal/ziptest"
)

// coreOnly is a system with only core installed (from its zip), on the
// database of db: SQLite in the system's own data/host.db, so that the
// system directory holds it.
func coreOnly(t *testing.T, db dbtest.DB) sys {
	t.Helper()
	flag := ""
	if db.Target.Driver == dbconn.Postgres {
		flag = db.Target.DSN
	}
	s := sys{t: t, host: packtest.Host(t), root: t.TempDir(), db: flag}
	core := buildZip(t, s.host, packtest.Build(t, "plugins/core", nil))
	if code, out := s.install(nil, []string{"--no-backup"}, core); code != 0 {
		t.Fatalf("install core: exit %d\n%s", code, out)
	}
	return s
}

// filesOutsideData is snapshot of root without the database files and
// the backups an install writes before it fails.
func filesOutsideData(t *testing.T, root string) map[string]string {
	out := ziptest.Snapshot(t, root)
	for k := range out {
		if k == "data" || strings.HasPrefix(k, "data"+string(filepath.Separator)) || strings.HasPrefix(k, system.BackupsDir+string(filepath.Separator)) {
			delete(out, k)
		}
	}
	return out
}

// TestRollbackDropsTheTablesOfANewPack installs notes, not installed
// before, whose last step fails after the first two committed: the host
// must drop the notes table it created and the notes rows of the meta
// tables, leaving the database as it was before the install, both when
// the install fails and when the host is killed after the upgrade.
func TestRollbackDropsTheTablesOfANewPack(t *testing.T) {
	dbtest.ForEach(t, func(t *testing.T, db dbtest.DB) {
		t.Run("when its upgrade fails", func(t *testing.T) {
			s := coreOnly(t, db)
			bad := buildZip(t, s.host, packtest.Build(t, "testdata/packs/notes", map[string]string{"release": "3", "failAt": "3"}))
			if err := copyFile(bad, filepath.Join(s.root, system.PendingDir, "notes-1.3.0.zip")); err != nil {
				t.Fatal(err)
			}
			baseline := dbSnapshot(t, s.target())
			if baseline["table notes"] != "" {
				t.Fatal("the notes table exists before the install")
			}
			before := filesOutsideData(t, s.root)
			r := packtest.RunHost(t, "run", "--install-updates", "--addr", "127.0.0.1:0", "--root", s.root, "--db", s.db)
			out := r.Stdout + r.Stderr
			if r.Code != 1 || !strings.Contains(out, "upgrade the database") || !strings.Contains(out, "simulated failure") ||
				!strings.Contains(out, "the old versions were put back") {
				t.Fatalf("exit %d, want 1 naming the failed upgrade:\n%s", r.Code, out)
			}
			ziptest.AssertSame(t, baseline, dbSnapshot(t, s.target()))
			ziptest.AssertSame(t, before, filesOutsideData(t, s.root))
			s.wantClean()

			// The system takes the pack later, from a zip that works.
			good := buildZip(t, s.host, packtest.Build(t, "testdata/packs/notes", map[string]string{"release": "3"}))
			os.Remove(filepath.Join(s.root, system.PendingDir, "notes-1.3.0.zip"))
			if code, out := s.install(nil, nil, good); code != 0 {
				t.Fatalf("install notes 1.3.0 after the rollback: exit %d\n%s", code, out)
			}
			s.wantNotes("1.3.0", 3)
		})
		t.Run("when the host is killed after its upgrade", func(t *testing.T) {
			s := coreOnly(t, db)
			zip3 := buildZip(t, s.host, packtest.Build(t, "testdata/packs/notes", map[string]string{"release": "3"}))
			baseline := dbSnapshot(t, s.target())
			code, out := s.install([]string{crashpoint.Env + "=after-upgrade"}, nil, zip3)
			if code != -1 {
				t.Fatalf("exit %d, want the host killed after the upgrade:\n%s", code, out)
			}
			if after := dbSnapshot(t, s.target()); after["table notes"] == "" {
				t.Fatal("the notes table was not created before the kill; the test proves nothing")
			}
			if code, out := s.install(nil, []string{"--recover-only"}); code != 0 || !strings.Contains(out, "undone") {
				t.Fatalf("restart: exit %d, want the install undone:\n%s", code, out)
			}
			ziptest.AssertSame(t, baseline, dbSnapshot(t, s.target()))
			if _, err := os.Stat(filepath.Join(s.root, "packs", "notes")); !os.IsNotExist(err) {
				t.Errorf("packs/notes after the undo: %v", err)
			}
			s.wantClean()
		})
	})
}

func copyFile(src, dst string) error {
	data, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	return os.WriteFile(dst, data, 0o644)
}
