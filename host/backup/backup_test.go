package backup_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/packhost/packhost/host/backup"
	"github.com/packhost/packhost/host/packs"
	"github.com/packhost/packhost/host/system"
	"github.com/packhost/packhost/internal/backupfile"
	"github.com/packhost/packhost/internal/dbconn"
	"github.com/packhost/packhost/internal/dbtest"
	"github.com/packhost/packhost/internal/meta"
	"github.com/packhost/packhost/internal/packerr"
	"github.com/packhost/packhost/internal/packpb"
	"github.com/packhost/packhost/internal/packtest"
)

func TestMain(m *testing.M) { packtest.Main(m) }

// fixture is a system directory on a test database with the core pack and
// the notes test pack installed, running and upgraded.
type fixture struct {
	root string
	db   dbtest.DB
	sys  *system.System
}

func dbFlag(db dbtest.DB) string {
	if db.Target.Driver == dbconn.SQLite {
		return "sqlite:" + db.Target.DSN
	}
	return db.Target.DSN
}

func newFixture(t *testing.T, db dbtest.DB, notesVars map[string]string) *fixture {
	t.Helper()
	root := t.TempDir()
	packtest.Install(t, root, packtest.Build(t, "plugins/core", nil))
	packtest.Install(t, root, packtest.Build(t, "testdata/packs/notes", notesVars))
	f := &fixture{root: root, db: db}
	f.open(t)
	for _, p := range f.sys.Packs {
		if err := p.Upgrade(context.Background(), nil, nil); err != nil {
			t.Fatalf("install tables of %s: %v", p.ID, err)
		}
	}
	return f
}

func (f *fixture) open(t *testing.T) {
	t.Helper()
	sys, err := system.Open(context.Background(), system.Options{Root: f.root, DBFlag: dbFlag(f.db), StartTimeout: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if len(sys.Failed) > 0 {
		sys.Close()
		t.Fatalf("packs did not start: %v", sys.Failed)
	}
	f.sys = sys
	t.Cleanup(sys.Close)
}

func (f *fixture) pack(t *testing.T, id string) *packs.Pack {
	t.Helper()
	p := f.sys.Pack(id)
	if p == nil {
		t.Fatalf("pack %s is not running", id)
	}
	return p
}

func (f *fixture) backupsDir() string { return f.sys.Path(system.BackupsDir) }

func (f *fixture) exec(t *testing.T, sql string, args ...any) {
	t.Helper()
	if err := f.db.Gorm.Exec(sql, args...).Error; err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

// rows returns the result of a query as one string per row.
func (f *fixture) rows(t *testing.T, sql string) []string {
	t.Helper()
	rs, err := f.db.Gorm.Raw(sql).Rows()
	if err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	defer rs.Close()
	cols, _ := rs.Columns()
	var out []string
	for rs.Next() {
		vals := make([]any, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rs.Scan(ptrs...); err != nil {
			t.Fatal(err)
		}
		var b strings.Builder
		for i, v := range vals {
			if i > 0 {
				b.WriteString(" | ")
			}
			switch x := v.(type) {
			case []byte:
				fmt.Fprintf(&b, "%q", x)
			case time.Time:
				b.WriteString(x.UTC().Format(time.RFC3339Nano))
			default:
				fmt.Fprintf(&b, "%#v", x)
			}
		}
		out = append(out, b.String())
	}
	if err := rs.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// state is everything a backup of the notes and core packs covers.
type state struct {
	Notes, Users, Audit, Settings, Registry []string
}

func (f *fixture) state(t *testing.T) state {
	t.Helper()
	return state{
		Notes:    f.rows(t, "SELECT * FROM notes ORDER BY id"),
		Users:    f.rows(t, "SELECT * FROM users ORDER BY id"),
		Audit:    f.rows(t, "SELECT * FROM audit_log ORDER BY id"),
		Settings: f.rows(t, "SELECT * FROM pack_settings ORDER BY pack_id, key"),
		Registry: f.rows(t, "SELECT * FROM schema_registry ORDER BY table_name, table_version"),
	}
}

func (s state) diff(o state) string {
	a, _ := json.MarshalIndent(s, "", " ")
	b, _ := json.MarshalIndent(o, "", " ")
	return fmt.Sprintf("want:\n%s\ngot:\n%s", a, b)
}

// fill writes rows that exercise the encodings: tabs, newlines,
// backslashes, quotes, non-ASCII text, NULLs, times and a custom setting.
func (f *fixture) fill(t *testing.T) {
	t.Helper()
	f.exec(t, `INSERT INTO notes (id, body, author, pinned) VALUES
		(1, 'plain', 'ann', true),
		(2, 'tab	and
newline and \ backslash and \N and ''quote''', '', false),
		(3, 'émoji 🎉 ünïcode', 'bob', true)`)
	f.exec(t, `INSERT INTO users (name, email, role, disabled_at, created_at) VALUES
		('ann', 'ann@example.com', 'admin', NULL, ?),
		('bob', NULL, 'member', ?, ?)`,
		time.Date(2025, 1, 2, 3, 4, 5, 123456000, time.UTC),
		time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC), time.Date(2024, 12, 31, 23, 59, 59, 999999000, time.UTC))
	f.exec(t, `INSERT INTO audit_log (at, actor, action, detail) VALUES (?, 'ann', 'login', '')`,
		time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC))
	if err := meta.SetSetting(context.Background(), f.db.Gorm, "notes", "greeting", "hello\tthere"); err != nil {
		t.Fatal(err)
	}
}

// mutate changes everything a restore must put back.
func (f *fixture) mutate(t *testing.T) {
	t.Helper()
	f.exec(t, `DELETE FROM notes WHERE id = 1`)
	f.exec(t, `UPDATE notes SET body = 'changed' WHERE id = 2`)
	f.exec(t, `INSERT INTO notes (id, body) VALUES (99, 'added after the backup')`)
	f.exec(t, `DELETE FROM users`)
	f.exec(t, `UPDATE pack_settings SET value = 'bye' WHERE key = 'greeting'`)
	f.exec(t, `INSERT INTO pack_settings (pack_id, key, value, updated_at) VALUES ('notes', 'extra', 'x', ?)`, time.Now().UTC())
	f.exec(t, `UPDATE schema_registry SET created_at = ? WHERE table_name = 'notes'`, time.Now().UTC())
}

func backupBoth(t *testing.T, f *fixture, at time.Time) (notes, core string) {
	t.Helper()
	paths, err := backup.Packs(context.Background(), f.backupsDir(), []*packs.Pack{f.pack(t, "core"), f.pack(t, "notes")}, at, nil)
	if err != nil {
		t.Fatal(err)
	}
	return paths[1], paths[0]
}

func restore(t *testing.T, f *fixture, path string) ([]*packpb.Progress, error) {
	t.Helper()
	var events []*packpb.Progress
	_, err := backup.Restore(context.Background(), f.sys.Packs, path, false, func(_ string, ev *packpb.Progress) {
		events = append(events, ev)
	})
	return events, err
}

func TestBackupThenRestoreGivesBackTheSameRowsSettingsAndRegistry(t *testing.T) {
	dbtest.ForEach(t, func(t *testing.T, db dbtest.DB) {
		f := newFixture(t, db, nil)
		f.fill(t)
		before := f.state(t)
		at := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)

		var events []*packpb.Progress
		notesPath, err := backup.Pack(context.Background(), f.backupsDir(), f.pack(t, "notes"), at, nil,
			func(_ string, ev *packpb.Progress) { events = append(events, ev) })
		if err != nil {
			t.Fatal(err)
		}
		corePath, err := backup.Pack(context.Background(), f.backupsDir(), f.pack(t, "core"), at, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		if want := filepath.Join(f.backupsDir(), "db-20260304T050607Z-notes"); notesPath != want {
			t.Fatalf("backup path %s, want %s", notesPath, want)
		}
		if len(events) == 0 || !events[len(events)-1].Done || events[len(events)-1].Current != 3 {
			t.Fatalf("backup progress should end with done and 3 rows, got %v", events)
		}
		checkPermissions(t, notesPath)
		entries, _ := os.ReadDir(f.backupsDir())
		for _, e := range entries {
			if strings.HasSuffix(e.Name(), ".partial") {
				t.Fatalf("a partial backup directory was left: %s", e.Name())
			}
		}

		list, err := backup.List(f.backupsDir())
		if err != nil {
			t.Fatal(err)
		}
		if len(list) != 2 || list[0].PackID != "core" || list[1].PackID != "notes" || list[1].Problem != "" ||
			!reflect.DeepEqual(list[1].Tables, []backup.TableInfo{{Name: "notes", Version: 3, Rows: 3}}) {
			t.Fatalf("List: %+v", list)
		}

		f.mutate(t)
		if f.state(t).Notes[0] == before.Notes[0] {
			t.Fatal("mutate changed nothing; the test would prove nothing")
		}
		if _, err := restore(t, f, notesPath); err != nil {
			t.Fatal(err)
		}
		if _, err := restore(t, f, corePath); err != nil {
			t.Fatal(err)
		}
		if after := f.state(t); !reflect.DeepEqual(before, after) {
			t.Fatalf("restore did not give back the backed-up state\n%s", before.diff(after))
		}
		for _, p := range []string{"core", "notes"} {
			states, err := f.pack(t, p).CheckSchema(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			for _, st := range states {
				if st.State != packpb.TableState_TABLE_STATE_OK {
					t.Fatalf("%s.%s is %s after the restore: %s", p, st.Name, st.State, st.Detail)
				}
			}
		}
		// Sequences were restored: a new user gets the next id, not one
		// that is taken.
		f.exec(t, `INSERT INTO users (name, role, created_at) VALUES ('carol', 'member', ?)`, time.Now().UTC())
		if got := f.rows(t, "SELECT id FROM users WHERE name = 'carol'"); len(got) != 1 || got[0] != "3" && got[0] != "0x3" {
			t.Fatalf("new user after restore got id %v, want 3", got)
		}
	})
}

func checkPermissions(t *testing.T, dir string) {
	t.Helper()
	fi, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o700 {
		t.Fatalf("%s has mode %v, want 0700", dir, fi.Mode().Perm())
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) < 4 {
		t.Fatalf("%s holds %d files", dir, len(entries))
	}
	for _, e := range entries {
		info, _ := e.Info()
		if info.Mode().Perm() != 0o600 {
			t.Fatalf("%s has mode %v, want 0600", e.Name(), info.Mode().Perm())
		}
	}
}

// copyDir copies a backup so each tampering starts from a good one.
func copyDir(t *testing.T, src string) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), filepath.Base(src))
	if err := os.CopyFS(dst, os.DirFS(src)); err != nil {
		t.Fatal(err)
	}
	return dst
}

func editManifest(t *testing.T, dir string, edit func(m *backupfile.Manifest)) {
	t.Helper()
	m, err := backupfile.ReadManifest(dir)
	if err != nil {
		t.Fatal(err)
	}
	edit(m)
	b, _ := json.MarshalIndent(m, "", "  ")
	if err := os.WriteFile(filepath.Join(dir, backupfile.ManifestFile), b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestRestoreRefusesADamagedBackupAndChangesNothing(t *testing.T) {
	dbtest.ForEach(t, func(t *testing.T, db dbtest.DB) {
		f := newFixture(t, db, nil)
		f.fill(t)
		good, _ := backupBoth(t, f, time.Now())
		f.mutate(t)
		changed := f.state(t)

		cases := []struct {
			name   string
			tamper func(t *testing.T, dir string)
			want   string
			// hostSide: refused by the host before the pack is asked.
			hostSide bool
		}{
			{"a flipped byte in the rows file", func(t *testing.T, dir string) {
				p := filepath.Join(dir, "notes.rows.zst")
				b, _ := os.ReadFile(p)
				b[len(b)/2] ^= 0x40
				os.WriteFile(p, b, 0o600)
			}, "notes.rows.zst: sha256 mismatch", false},
			{"a missing rows file", func(t *testing.T, dir string) {
				os.Remove(filepath.Join(dir, "notes.rows.zst"))
			}, "notes.rows.zst is missing (listed in manifest.json)", false},
			{"a wrong row count in the manifest", func(t *testing.T, dir string) {
				editManifest(t, dir, func(m *backupfile.Manifest) { m.Tables[0].Rows = 4 })
			}, "notes.rows.zst holds 3 rows, the manifest says 4", false},
			{"a changed setting", func(t *testing.T, dir string) {
				p := filepath.Join(dir, backupfile.SettingsFile)
				b, _ := os.ReadFile(p)
				os.WriteFile(p, []byte(strings.Replace(string(b), "hello", "HELLO", 1)), 0o600)
			}, "pack_settings.json: sha256 mismatch", false},
			{"a table version newer than the pack knows", func(t *testing.T, dir string) {
				editManifest(t, dir, func(m *backupfile.Manifest) { m.Tables[0].Version = 7 })
			}, "table notes is at version 7 in the backup but pack notes 1.3.0 knows versions up to 3", false},
			{"no manifest", func(t *testing.T, dir string) {
				os.Remove(filepath.Join(dir, backupfile.ManifestFile))
			}, "has no manifest.json; it is not a database backup", true},
		}
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				dir := copyDir(t, good)
				c.tamper(t, dir)
				_, err := restore(t, f, dir)
				if err == nil {
					t.Fatal("the damaged backup was restored")
				}
				if !strings.Contains(err.Error(), c.want) {
					t.Fatalf("error %q does not say %q", err, c.want)
				}
				if !c.hostSide {
					if !errors.Is(err, packerr.ErrBackupInvalid) {
						t.Fatalf("error %v is not ErrBackupInvalid", err)
					}
					if !strings.Contains(err.Error(), "nothing was restored") {
						t.Fatalf("error %q does not say nothing was restored", err)
					}
				}
				if now := f.state(t); !reflect.DeepEqual(changed, now) {
					t.Fatalf("a refused restore changed the database\n%s", changed.diff(now))
				}
			})
		}
	})
}

func TestABackupRestoredUnderNewerCodeIsOutdatedAndUpgrades(t *testing.T) {
	dbtest.ForEach(t, func(t *testing.T, db dbtest.DB) {
		f := newFixture(t, db, map[string]string{"release": "2"})
		f.exec(t, `INSERT INTO notes (id, body, author) VALUES (1, 'from release 2', 'ann')`)
		path, err := backup.Pack(context.Background(), f.backupsDir(), f.pack(t, "notes"), time.Now(), nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		f.sys.Close()
		packtest.Install(t, f.root, packtest.Build(t, "testdata/packs/notes", map[string]string{"release": "3"}))
		f.open(t)
		notes := f.pack(t, "notes")
		if err := notes.Upgrade(context.Background(), nil, nil); err != nil {
			t.Fatal(err)
		}
		f.exec(t, `INSERT INTO notes (id, body, pinned) VALUES (2, 'from release 3', true)`)

		if _, err := restore(t, f, path); err != nil {
			t.Fatal(err)
		}
		st, err := notes.CheckSchema(context.Background(), "notes")
		if err != nil {
			t.Fatal(err)
		}
		if st[0].State != packpb.TableState_TABLE_STATE_OUTDATED || st[0].InstalledVersion != 2 {
			t.Fatalf("after restoring a release-2 backup under release 3: %s at version %d (%s), want outdated at 2",
				st[0].State, st[0].InstalledVersion, st[0].Detail)
		}
		if err := notes.Upgrade(context.Background(), nil, nil); err != nil {
			t.Fatal(err)
		}
		st, _ = notes.CheckSchema(context.Background(), "notes")
		if st[0].State != packpb.TableState_TABLE_STATE_OK || st[0].InstalledVersion != 3 {
			t.Fatalf("after the upgrade: %s at version %d, want ok at 3", st[0].State, st[0].InstalledVersion)
		}
		got := f.rows(t, "SELECT id, body, author FROM notes ORDER BY id")
		if len(got) != 1 || !strings.Contains(got[0], "from release 2") {
			t.Fatalf("rows after restore and upgrade: %v", got)
		}
	})
}

func TestAFailedBackupLeavesNothingBehind(t *testing.T) {
	dbtest.ForEach(t, func(t *testing.T, db dbtest.DB) {
		f := newFixture(t, db, nil)
		f.exec(t, `DROP TABLE notes`)
		_, err := backup.Pack(context.Background(), f.backupsDir(), f.pack(t, "notes"), time.Now(), nil, nil)
		if err == nil || !strings.Contains(err.Error(), "table notes: version 3 is recorded but the table does not exist") ||
			!strings.Contains(err.Error(), "no backup was kept") {
			t.Fatalf("backup of a dropped table: %v", err)
		}
		_, err = backup.Pack(context.Background(), f.backupsDir(), f.pack(t, "notes"), time.Now(), []string{"nope"}, nil)
		if !errors.Is(err, packerr.ErrUnknownTable) {
			t.Fatalf("backup of an unknown table: %v", err)
		}
		entries, err := os.ReadDir(f.backupsDir())
		if err != nil {
			t.Fatal(err)
		}
		if len(entries) != 0 {
			t.Fatalf("failed backups left %v in %s", entries, f.backupsDir())
		}
	})
}

// orderedDigest hashes the rows of a table in id order: on PostgreSQL with
// an md5 of string_agg computed by the server, on SQLite in Go.
func orderedDigest(t *testing.T, db dbtest.DB, table string) string {
	t.Helper()
	if db.Target.Driver == dbconn.Postgres {
		var sum string
		q := fmt.Sprintf("SELECT md5(string_agg(t::text, E'\\n' ORDER BY id)) FROM %s t", table)
		if err := db.Gorm.Raw(q).Scan(&sum).Error; err != nil {
			t.Fatal(err)
		}
		return sum
	}
	rs, err := db.Gorm.Raw("SELECT id, body, author, pinned FROM " + table + " ORDER BY id").Rows()
	if err != nil {
		t.Fatal(err)
	}
	defer rs.Close()
	h := sha256.New()
	var id, pinned int64
	var body, author string
	for rs.Next() {
		if err := rs.Scan(&id, &body, &author, &pinned); err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(h, "%d\t%q\t%q\t%d\n", id, body, author, pinned)
	}
	if err := rs.Err(); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// peakMemoryKB is a process's peak resident set (VmHWM) in kB.
func peakMemoryKB(t *testing.T, pid int) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Skipf("no /proc to read the pack's peak memory from: %v", err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(l, "VmHWM:"); ok {
			var kb int64
			fmt.Sscanf(strings.TrimSpace(rest), "%d kB", &kb)
			return kb
		}
	}
	t.Fatalf("no VmHWM in /proc/%d/status", pid)
	return 0
}

const bigRows = 1_000_000

// fillBig writes bigRows notes with the database's own generator.
func fillBig(t testing.TB, db dbtest.DB, n int) {
	t.Helper()
	q := `INSERT INTO notes (id, body, author, pinned)
		SELECT g, 'note ' || g || ' ' || md5(g::text), 'author' || (g % 100), g % 3 = 0
		FROM generate_series(1, ?) AS g`
	if db.Target.Driver == dbconn.SQLite {
		q = `WITH RECURSIVE s(g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM s WHERE g < ?)
		INSERT INTO notes (id, body, author, pinned)
		SELECT g, 'note ' || g || ' ' || printf('%08x%08x', (g * 2654435761) % 4294967296, (g * 40503) % 65536), 'author' || (g % 100), g % 3 = 0 FROM s`
	}
	if err := db.Gorm.Exec(q, n).Error; err != nil {
		t.Fatal(err)
	}
}

func TestAMillionRowTableRoundTripsInConstantMemory(t *testing.T) {
	if os.Getenv("PACKHOST_BIG_TESTS") != "1" {
		t.Skip("set PACKHOST_BIG_TESTS=1 (make test does) to run the 1,000,000-row backup and restore")
	}
	dbtest.ForEach(t, func(t *testing.T, db dbtest.DB) {
		f := newFixture(t, db, nil)
		fillBig(t, db, bigRows)
		want := orderedDigest(t, db, "notes")
		notes := f.pack(t, "notes")

		start := time.Now()
		path, err := backup.Pack(context.Background(), f.backupsDir(), notes, time.Now(), nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		backupPeak := peakMemoryKB(t, notes.PID())
		t.Logf("backup of %d rows: %v, pack peak memory %d MB", bigRows, time.Since(start).Round(time.Millisecond), backupPeak/1024)

		f.exec(t, `DELETE FROM notes WHERE id % 2 = 0`)
		f.exec(t, `UPDATE notes SET body = 'changed' WHERE id < 1000`)
		if orderedDigest(t, db, "notes") == want {
			t.Fatal("the table did not change; the test would prove nothing")
		}
		start = time.Now()
		if _, err := restore(t, f, path); err != nil {
			t.Fatal(err)
		}
		restorePeak := peakMemoryKB(t, notes.PID())
		t.Logf("restore of %d rows: %v, pack peak memory %d MB", bigRows, time.Since(start).Round(time.Millisecond), restorePeak/1024)
		if got := orderedDigest(t, db, "notes"); got != want {
			t.Fatalf("rows differ after the round trip: digest %s, want %s", got, want)
		}
		if backupPeak > 100*1024 {
			t.Fatalf("the pack's peak memory during the backup was %d MB, want under 100 MB", backupPeak/1024)
		}
		if restorePeak > 100*1024 {
			t.Fatalf("the pack's peak memory during the restore was %d MB, want under 100 MB", restorePeak/1024)
		}
	})
}
