package install

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/packhost/packhost/host/recovery"
	"github.com/packhost/packhost/internal/packtest"
)

// TestStartSweepsWhatAKilledHostLeft puts in a system directory the
// temporary files a host killed while writing them leaves (a database
// backup, a system backup, a zip being copied in or signed, the journal),
// some of them just written, and files of other names: the next start
// removes the old temporary ones only.
func TestStartSweepsWhatAKilledHostLeft(t *testing.T) {
	s := sys{t: t, host: packtest.Host(t), root: t.TempDir()}
	old := time.Now().Add(-2 * recovery.SweepAge)
	write := func(rel string, age time.Time) {
		t.Helper()
		p := filepath.Join(s.root, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
		for q := p; q != s.root; q = filepath.Dir(q) {
			if err := os.Chtimes(q, age, age); err != nil {
				t.Fatal(err)
			}
		}
	}
	gone := []string{
		"Updates_Backups/.db-20261125T100000Z-notes.partial/notes.rows",
		"Updates_Backups/.db-20261125T100000Z.2-core.partial/manifest.json",
		"Updates_Backups/.system-123456789.zip.tmp",
		"Updates_Pending/notes-1.3.0.zip.tmp",
		"Updates_Pending/.notes-1.3.0.zip.tmp-42",
		".install-journal.json.tmp",
	}
	for _, rel := range gone {
		write(rel, old)
	}
	stay := []string{
		// Just written: a host may be writing them now.
		"Updates_Backups/.db-20261125T100001Z-notes.partial/notes.rows",
		"Updates_Backups/.system-987654321.zip.tmp",
		// Not our names.
		"Updates_Backups/.db-notes.partial/notes.rows",
		"Updates_Backups/db-20261125T100000Z-notes/manifest.json",
		"Updates_Backups/system-20261125T100000Z.zip",
		"Updates_Pending/notes-1.3.0.zip",
		"Updates_Pending/.notes-1.3.0.zip.part",
		"Updates_Installed/notes-1.2.0.zip.tmp",
		"packs/notes/steps.tmp",
		"data/host.db.tmp",
	}
	for i, rel := range stay {
		age := old
		if i < 2 {
			age = time.Now()
		}
		write(rel, age)
	}
	code, out := s.install(nil, []string{"--recover-only"})
	if code != 0 {
		t.Fatalf("host pack install --recover-only: exit %d\n%s", code, out)
	}
	for _, rel := range gone {
		top := strings.SplitN(rel, "/", 3)
		p := filepath.Join(s.root, top[0])
		if len(top) > 1 {
			p = filepath.Join(p, top[1])
		}
		if _, err := os.Lstat(p); !os.IsNotExist(err) {
			t.Errorf("%s was left (%v)", p, err)
		}
		if !strings.Contains(out, filepath.Clean(strings.Join(top[:min(2, len(top))], "/"))) {
			t.Errorf("the log does not name %s:\n%s", rel, out)
		}
	}
	for _, rel := range stay {
		if _, err := os.Lstat(filepath.Join(s.root, rel)); err != nil {
			t.Errorf("%s was removed: %v", rel, err)
		}
	}
}
