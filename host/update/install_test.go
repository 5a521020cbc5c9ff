package update

import (
	"archive/zip"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/packhost/packhost/host/manifest"
	"github.com/packhost/packhost/host/report"
	"github.com/packhost/packhost/internal/dbconn"
	"github.com/packhost/packhost/internal/dbtest"
	"github.com/packhost/packhost/internal/packtest"
)

func TestMain(m *testing.M) { packtest.Main(m) }

// sys is a system directory driven through the real host binary.
type sys struct {
	t    *testing.T
	host string
	root string
	db   string // --db
}

func (s sys) exec(env []string, args ...string) (int, string) {
	s.t.Helper()
	cmd := exec.Command(s.host, args...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0, string(out)
	case errors.As(err, &ee):
		return ee.ExitCode(), string(out)
	}
	s.t.Fatalf("host %v: %v", args, err)
	return 0, ""
}

// install runs `host pack install` with the zips given.
func (s sys) install(env []string, flags []string, zips ...string) (int, string) {
	s.t.Helper()
	args := append([]string{"pack", "install", "--root", s.root, "--db", s.db}, flags...)
	return s.exec(env, append(args, zips...)...)
}

func (s sys) status() *report.Report {
	s.t.Helper()
	cmd := exec.Command(s.host, "status", "--json", "--root", s.root, "--db", s.db)
	out, _ := cmd.Output()
	var r report.Report
	if err := json.Unmarshal(out, &r); err != nil {
		s.t.Fatalf("host status --json: %v\n%s", err, out)
	}
	return &r
}

// buildZip runs `host pack build` on a pack binary and returns the zip.
func buildZip(t *testing.T, host, bin string) string {
	t.Helper()
	out := t.TempDir()
	cmd := exec.Command(host, "pack", "build", "--out", out, bin)
	b, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("host pack build %s: %v\n%s", bin, err, b)
	}
	zips, _ := filepath.Glob(filepath.Join(out, "*.zip"))
	if len(zips) != 1 {
		t.Fatalf("pack build wrote %v", zips)
	}
	return zips[0]
}

func dbFlag(db dbtest.DB) string {
	if db.Target.Driver == dbconn.SQLite {
		return "sqlite:" + db.Target.DSN
	}
	return db.Target.DSN
}

// newSystem installs core and notes release 2 (1.2.0, table notes at 2)
// from zips, as an admin would.
func newSystem(t *testing.T, db string) sys {
	t.Helper()
	s := sys{t: t, host: packtest.Host(t), root: t.TempDir(), db: db}
	core := buildZip(t, s.host, packtest.Build(t, "plugins/core", nil))
	notes := buildZip(t, s.host, packtest.Build(t, "testdata/packs/notes", map[string]string{"release": "2"}))
	if code, out := s.install(nil, []string{"--no-backup"}, core, notes); code != 0 {
		t.Fatalf("install core and notes 1.2.0: exit %d\n%s", code, out)
	}
	s.wantNotes("1.2.0", 2)
	return s
}

// wantNotes checks the installed notes pack and its table.
func (s sys) wantNotes(version string, table int) {
	s.t.Helper()
	m, err := manifest.Load(filepath.Join(s.root, "packs", "notes", manifest.FileName))
	if err != nil {
		s.t.Fatal(err)
	}
	if m.Version != version {
		s.t.Errorf("notes %s installed, want %s", m.Version, version)
	}
	r := s.status()
	for _, p := range r.Packs {
		if p.ID != "notes" {
			continue
		}
		if !p.Running || p.Version != version {
			s.t.Errorf("notes running=%v version %s (%s), want %s running", p.Running, p.Version, p.Error, version)
		}
		for _, tb := range p.Tables {
			if tb.InstalledVersion != table || tb.State != report.StateOK {
				s.t.Errorf("table %s at %d (%s), want %d ok", tb.Name, tb.InstalledVersion, tb.State, table)
			}
		}
		return
	}
	s.t.Errorf("notes not in the status report: %+v", r.Packs)
}

// wantClean checks that no staging, old version or journal is left.
func (s sys) wantClean() {
	s.t.Helper()
	left, _ := filepath.Glob(filepath.Join(s.root, "packs", ".*"))
	if j, _ := filepath.Glob(filepath.Join(s.root, ".install-journal*")); len(j) > 0 {
		left = append(left, j...)
	}
	if len(left) > 0 {
		s.t.Errorf("left behind: %v", left)
	}
}

func pendingNames(t *testing.T, root, dir string) []string {
	entries, _ := os.ReadDir(filepath.Join(root, dir))
	var out []string
	for _, e := range entries {
		out = append(out, e.Name())
	}
	sort.Strings(out)
	return out
}

func TestInstallUpgradesAPackAndItsTables(t *testing.T) {
	dbtest.ForEach(t, func(t *testing.T, db dbtest.DB) {
		s := newSystem(t, dbFlag(db))
		zip3 := buildZip(t, s.host, packtest.Build(t, "testdata/packs/notes", map[string]string{"release": "3"}))
		before := snapshot(t, s.root)
		if code, out := s.install(nil, nil, zip3); code != 0 {
			t.Fatalf("install notes 1.3.0: exit %d\n%s", code, out)
		}
		s.wantNotes("1.3.0", 3)
		s.wantClean()
		if p := pendingNames(t, s.root, PendingDir); len(p) != 0 {
			t.Errorf("still pending: %v", p)
		}
		inst := pendingNames(t, s.root, InstalledDir)
		if len(inst) != 3 || !regexp.MustCompile(`^notes-1\.3\.0-\d{8}T\d{6}Z\.zip$`).MatchString(inst[2]) {
			t.Errorf("Updates_Installed holds %v, want notes-1.3.0-<UTC ts>.zip", inst)
		}
		// The system backup holds the system directory as it was before
		// the install (the zip was copied into Updates_Pending first).
		backups, _ := filepath.Glob(filepath.Join(s.root, BackupsDir, "system-*.zip"))
		if len(backups) != 1 {
			t.Fatalf("system backups: %v", backups)
		}
		zr, err := zip.OpenReader(backups[0])
		if err != nil {
			t.Fatal(err)
		}
		defer zr.Close()
		inZip := map[string]bool{}
		for _, f := range zr.File {
			inZip[strings.TrimSuffix(f.Name, "/")] = true
		}
		for p := range before {
			p = filepath.ToSlash(p)
			if p == "." || strings.HasPrefix(p, BackupsDir) || strings.HasPrefix(p, InstalledDir) || strings.HasPrefix(p, "data/host.db-") {
				continue
			}
			if !inZip[p] && !strings.HasPrefix(p, PendingDir+"/notes-1.3.0.zip") {
				t.Errorf("system backup lacks %s", p)
			}
		}
		if !inZip["packs/notes/pack.json"] {
			t.Error("system backup lacks the old notes manifest")
		}
	})
}

func TestInstallRollsBackAFailedMigration(t *testing.T) {
	dbtest.ForEach(t, func(t *testing.T, db dbtest.DB) {
		s := newSystem(t, dbFlag(db))
		bad := buildZip(t, s.host, packtest.Build(t, "testdata/packs/notes", map[string]string{"release": "3", "failAt": "3"}))
		code, out := s.install(nil, nil, bad)
		if code != 1 || !strings.Contains(out, "upgrade the database") || !strings.Contains(out, "the old versions were put back") {
			t.Fatalf("exit %d, want 1 naming the failed upgrade:\n%s", code, out)
		}
		s.wantNotes("1.2.0", 2)
		s.wantClean()
		if p := pendingNames(t, s.root, PendingDir); len(p) != 1 || p[0] != "notes-1.3.0.zip" {
			t.Errorf("pending: %v, want the zip still there", p)
		}
		if inst := pendingNames(t, s.root, InstalledDir); len(inst) != 2 { // core and notes 1.2.0
			t.Errorf("Updates_Installed: %v", inst)
		}
	})
}

func TestInstallRollsBackABinaryThatReportsAnotherVersion(t *testing.T) {
	t.Run("on sqlite", func(t *testing.T) {
		s := newSystem(t, "")
		// A manifest saying 1.3.0 around the 1.2.0 binary, checksums right.
		bin := packtest.Build(t, "testdata/packs/notes", map[string]string{"release": "2"})
		data, err := os.ReadFile(bin)
		if err != nil {
			t.Fatal(err)
		}
		m := goodManifest("notes", "1.3.0", data)
		m.DependsOn = []string{"core"}
		lying := filepath.Join(t.TempDir(), "notes-1.3.0.zip")
		writeZip(t, lying, []entry{manifestEntry(t, m), {name: m.Binaries[manifest.Platform()].Path, data: data, mode: 0o755}})
		before := snapshot(t, filepath.Join(s.root, "packs"))
		code, out := s.install(nil, nil, lying)
		if code != 1 || !strings.Contains(out, "binary does not match its manifest: manifest says notes 1.3.0, binary reports notes 1.2.0") {
			t.Fatalf("exit %d, want 1 naming the identity mismatch:\n%s", code, out)
		}
		assertSame(t, before, snapshot(t, filepath.Join(s.root, "packs")))
		s.wantNotes("1.2.0", 2)
		s.wantClean()
		if p := pendingNames(t, s.root, PendingDir); len(p) != 1 {
			t.Errorf("pending: %v, want the zip still there", p)
		}
	})
}
