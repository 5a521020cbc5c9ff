package install

import (
	"encoding/json"
	"fmt"
	"io/fs"
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

// treeWithTimes maps every path under root to its mode, size,
// modification time and content hash: a stricter "nothing changed" than
// ziptest.Snapshot.
func treeWithTimes(t *testing.T, root string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		v := fmt.Sprintf("%s %d %d", fi.Mode(), fi.Size(), fi.ModTime().UnixNano())
		if fi.Mode().IsRegular() {
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			v += " " + ziptest.Sum(data)
		}
		rel, _ := filepath.Rel(root, p)
		out[rel] = v
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestStatusChangesNothingInEveryJournalState kills an install at each of
// its steps and runs `host status` on what it left: not a byte of the
// system directory (times included) and not a row of the database
// changes, and the report says an install was interrupted.
func TestStatusChangesNothingInEveryJournalState(t *testing.T) {
	dbtest.ForEach(t, func(t *testing.T, db dbtest.DB) {
		tmpl := templateSystem(t, db)
		zip3 := buildZip(t, tmpl.host, packtest.Build(t, "testdata/packs/notes", map[string]string{"release": "3"}))
		for _, step := range CrashSteps {
			t.Run("killed "+step, func(t *testing.T) {
				s := copyOf(t, tmpl)
				if code, out := s.install([]string{crashpoint.Env + "=" + step}, nil, zip3); code != -1 {
					t.Fatalf("exit %d, want the host killed at %s:\n%s", code, step, out)
				}
				// The test reads SQLite through a copy: a connection of its
				// own would fold the write-ahead log the kill left into the
				// file when it closes.
				files := treeWithTimes(t, s.root)
				rows := dbSnapshot(t, readable(t, s.target()))
				r := s.status()
				if _, err := os.Stat(filepath.Join(s.root, ".install-journal.json")); err == nil &&
					!strings.Contains(strings.Join(r.Problems, "\n"), "was interrupted") {
					t.Errorf("status does not report the interrupted install: %v", r.Problems)
				}
				ziptest.AssertSame(t, files, treeWithTimes(t, s.root))
				ziptest.AssertSame(t, rows, dbSnapshot(t, readable(t, s.target())))
			})
		}
	})
}

// readable is target, or for SQLite a copy of its file and write-ahead
// log, so that reading it changes nothing of the original.
func readable(t *testing.T, target dbconn.Target) dbconn.Target {
	t.Helper()
	if target.Driver != dbconn.SQLite {
		return target
	}
	dir := t.TempDir()
	dst := filepath.Join(dir, "copy.db")
	for _, suffix := range []string{"", "-wal"} {
		data, err := os.ReadFile(target.DSN + suffix)
		if os.IsNotExist(err) && suffix != "" {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(dst+suffix, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dbconn.Target{Driver: dbconn.SQLite, DSN: dst}
}

// stuck is a system whose install was killed after its upgrade and whose
// database backup was then damaged, so that recovery cannot restore the
// tables: the journal stays, the files are the old version's, the tables
// the new one's.
type stuck struct {
	sys
	damaged string // the damaged rows file
	good    []byte // its bytes before
	early   string // a database backup of notes taken before the install
}

func makeStuck(t *testing.T, tmpl sys, zip3 string) stuck {
	t.Helper()
	s := copyOf(t, tmpl)
	code, out := s.exec(nil, "db", "backup", "--root", s.root, "--db", s.db, "--pack", "notes")
	if code != 0 {
		t.Fatalf("db backup: exit %d\n%s", code, out)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	early := lines[len(lines)-1] // the backup's path, after the log lines
	if code, out := s.install([]string{crashpoint.Env + "=after-upgrade"}, nil, zip3); code != -1 {
		t.Fatalf("exit %d, want the host killed after the upgrade:\n%s", code, out)
	}
	var j struct {
		DBBackup string `json:"db_backup"`
	}
	data, _ := os.ReadFile(filepath.Join(s.root, ".install-journal.json"))
	if err := json.Unmarshal(data, &j); err != nil || j.DBBackup == "" {
		t.Fatalf("journal %s: %v", data, err)
	}
	rows := filepath.Join(s.root, system.BackupsDir, j.DBBackup, "notes.rows.zst")
	good, err := os.ReadFile(rows)
	if err != nil {
		t.Fatal(err)
	}
	bad := append([]byte(nil), good...)
	bad[len(bad)/2] ^= 0x55
	if err := os.WriteFile(rows, bad, 0o600); err != nil {
		t.Fatal(err)
	}
	code, out = s.exec(nil, "run", "--root", s.root, "--db", s.db, "--addr", "127.0.0.1:0")
	if code != 1 || !strings.Contains(out, "could not be recovered") || !strings.Contains(out, "host recover") {
		t.Fatalf("host run on the damaged backup: exit %d, want 1 pointing at host recover:\n%s", code, out)
	}
	return stuck{sys: s, damaged: rows, good: good, early: early}
}

// TestAStuckRecoveryHasWaysOut shows the wedge of a recovery that cannot
// finish and each way out of it, none needing SQL or deleting files by
// hand: status says what is wrong and what to do and changes nothing;
// `host recover` shows what is on disk; --retry works once the backup is
// good again; --restore puts the tables back from another backup;
// --keep-current leaves things as they are and sets the journal aside.
func TestAStuckRecoveryHasWaysOut(t *testing.T) {
	dbtest.ForEach(t, func(t *testing.T, db dbtest.DB) {
		tmpl := templateSystem(t, db)
		zip3 := buildZip(t, tmpl.host, packtest.Build(t, "testdata/packs/notes", map[string]string{"release": "3"}))

		t.Run("status and recover say what is wrong and change nothing", func(t *testing.T) {
			s := makeStuck(t, tmpl, zip3)
			files := treeWithTimes(t, s.root)
			rows := dbSnapshot(t, readable(t, s.target()))
			r := s.status()
			problems := strings.Join(r.Problems, "\n")
			if r.ExitCode != 1 || !strings.Contains(problems, "its recovery could not finish") || !strings.Contains(problems, "sha256 mismatch") ||
				!strings.Contains(problems, "--keep-current") {
				t.Errorf("status exit %d, problems:\n%s", r.ExitCode, problems)
			}
			code, out := s.exec(nil, "recover", "--root", s.root, "--db", s.db)
			for _, want := range []string{"State            restore-db", "Last attempt", "packs/notes: version 1.2.0", "notes.rows.zst", "host recover --retry", "host recover --restore PATH", "host recover --keep-current"} {
				if !strings.Contains(out, want) {
					t.Errorf("host recover (exit %d) does not show %q:\n%s", code, want, out)
				}
			}
			ziptest.AssertSame(t, files, treeWithTimes(t, s.root))
			ziptest.AssertSame(t, rows, dbSnapshot(t, readable(t, s.target())))
		})
		t.Run("--retry once the backup is good again", func(t *testing.T) {
			s := makeStuck(t, tmpl, zip3)
			if code, out := s.exec(nil, "recover", "--retry", "--root", s.root, "--db", s.db); code != 1 || !strings.Contains(out, "sha256 mismatch") {
				t.Fatalf("--retry on the damaged backup: exit %d\n%s", code, out)
			}
			if err := os.WriteFile(s.damaged, s.good, 0o600); err != nil {
				t.Fatal(err)
			}
			if code, out := s.exec(nil, "recover", "--retry", "--root", s.root, "--db", s.db); code != 0 {
				t.Fatalf("--retry: exit %d\n%s", code, out)
			}
			s.wantNotes("1.2.0", 2)
			s.wantClean()
		})
		t.Run("--restore another backup", func(t *testing.T) {
			s := makeStuck(t, tmpl, zip3)
			code, out := s.exec(nil, "recover", "--restore", s.early, "--root", s.root, "--db", s.db)
			if code != 0 || !strings.Contains(out, "restored from") {
				t.Fatalf("--restore: exit %d\n%s", code, out)
			}
			s.wantNotes("1.2.0", 2)
			s.wantClean()
			logged, _ := os.ReadFile(filepath.Join(s.root, "data", "recovery.log"))
			if !strings.Contains(string(logged), "host recover --restore") {
				t.Errorf("recovery.log: %q", logged)
			}
		})
		t.Run("--keep-current", func(t *testing.T) {
			s := makeStuck(t, tmpl, zip3)
			code, out := s.exec(nil, "recover", "--keep-current", "--root", s.root, "--db", s.db)
			// The files were put back to 1.2.0 before the restore failed,
			// the tables are the new version's: kept as they are, that is a
			// conflict the report shows, with the zip still pending.
			if code != 0 || !strings.Contains(out, "kept pack notes: version 1.2.0") || !strings.Contains(out, "set aside as") ||
				!strings.Contains(out, "notes  1.2.0    notes      3          2     newer") {
				t.Fatalf("--keep-current: exit %d\n%s", code, out)
			}
			aside, _ := filepath.Glob(filepath.Join(s.root, system.BackupsDir, "install-journal-*.json"))
			if len(aside) != 1 {
				t.Errorf("journal set aside: %v", aside)
			}
			s.wantClean()
		})
	})
}

// TestAJournalWithHostileNamesIsNotActedOn puts a journal that names a
// directory outside the system directory where the host would remove
// one: the host refuses it naming the name, the directory outside stays,
// status says so, and `host recover --keep-current` sets the journal
// aside so that the host starts again.
func TestAJournalWithHostileNamesIsNotActedOn(t *testing.T) {
	dbtest.ForEach(t, func(t *testing.T, db dbtest.DB) {
		s := newSystem(t, dbFlag(db))
		victim := filepath.Join(filepath.Dir(s.root), "victim")
		if err := os.MkdirAll(victim, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(victim, "keep.txt"), []byte("mine"), 0o644); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(victim) })
		journal := `{"format": "packhost-install-journal/2", "stamp": "20261120T101500Z", "state": "swapping",
			"packs": [{"id": "notes", "version": "1.3.0", "old_version": "1.2.0", "zip": "notes-1.3.0.zip",
			"stage": "../../victim", "old": "../../victim"}]}`
		if err := os.WriteFile(filepath.Join(s.root, ".install-journal.json"), []byte(journal), 0o644); err != nil {
			t.Fatal(err)
		}
		code, out := s.exec(nil, "run", "--root", s.root, "--db", s.db, "--addr", "127.0.0.1:0")
		if code != 1 || !strings.Contains(out, `"../../victim"`) || !strings.Contains(out, "not a name this host writes") {
			t.Fatalf("host run: exit %d, want 1 naming the hostile directory:\n%s", code, out)
		}
		if data, err := os.ReadFile(filepath.Join(victim, "keep.txt")); err != nil || string(data) != "mine" {
			t.Fatalf("the directory outside the system was touched: %v", err)
		}
		if r := s.status(); r.ExitCode != 1 || !strings.Contains(strings.Join(r.Problems, "\n"), "not a name this host writes") {
			t.Errorf("status: exit %d, problems %v", r.ExitCode, r.Problems)
		}
		if code, out := s.exec(nil, "recover", "--keep-current", "--root", s.root, "--db", s.db); code != 0 {
			t.Fatalf("recover --keep-current: exit %d\n%s", code, out)
		}
		if _, err := os.Stat(filepath.Join(victim, "keep.txt")); err != nil {
			t.Fatal("the directory outside the system was removed")
		}
		s.wantNotes("1.2.0", 2)
		s.wantClean()
	})
}
