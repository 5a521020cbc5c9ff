package install

import (
	"archive/zip"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/packhost/packhost/host/manifest"
	"github.com/packhost/packhost/host/report"
	"github.com/packhost/packhost/host/system"
	"github.com/packhost/packhost/host/updatezip"
	"github.com/packhost/packhost/internal/dbconn"
	"github.com/packhost/packhost/internal/dbtest"
	"github.com/packhost/packhost/internal/packtest"
	"github.com/packhost/packhost/internal/tablestate"
	"github.com/packhost/packhost/internal/ziptest"
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
			if tb.InstalledVersion != table || tb.State != tablestate.OK {
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
		before := ziptest.Snapshot(t, s.root)
		if code, out := s.install(nil, nil, zip3); code != 0 {
			t.Fatalf("install notes 1.3.0: exit %d\n%s", code, out)
		}
		s.wantNotes("1.3.0", 3)
		s.wantClean()
		if p := pendingNames(t, s.root, system.PendingDir); len(p) != 0 {
			t.Errorf("still pending: %v", p)
		}
		inst := pendingNames(t, s.root, system.InstalledDir)
		if len(inst) != 3 || !regexp.MustCompile(`^notes-1\.3\.0-\d{8}T\d{6}Z\.zip$`).MatchString(inst[2]) {
			t.Errorf("Updates_Installed holds %v, want notes-1.3.0-<UTC ts>.zip", inst)
		}
		// The system backup holds the system directory as it was before
		// the install (the zip was copied into Updates_Pending first).
		backups, _ := filepath.Glob(filepath.Join(s.root, system.BackupsDir, "system-*.zip"))
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
			if p == "." || strings.HasPrefix(p, system.BackupsDir) || strings.HasPrefix(p, system.InstalledDir) || strings.HasPrefix(p, "data/host.db-") {
				continue
			}
			if !inZip[p] && !strings.HasPrefix(p, system.PendingDir+"/notes-1.3.0.zip") {
				t.Errorf("system backup lacks %s", p)
			}
		}
		if !inZip["packs/notes/pack.json"] {
			t.Error("system backup lacks the old notes manifest")
		}

		t.Run("and a rollback restores only the install's backups", func(t *testing.T) {
			restoresOnlyTheInstallsBackups(t, s)
		})
	})
}

// TestInstallRollsBackAFailedMigration installs over notes 1.2.0 a
// release that adds the table notes_extra (created first) and whose step
// to notes 3 fails: the rollback restores notes from the backup with the
// old binary and drops notes_extra with its meta rows. Then a release
// whose step hangs until the host is stopped (SIGTERM) is rolled back all
// the same, and a good zip of that release installs.
func TestInstallRollsBackAFailedMigration(t *testing.T) {
	dbtest.ForEach(t, func(t *testing.T, db dbtest.DB) {
		s := newSystem(t, dbFlag(db))
		baseline := dbSnapshot(t, s.target())
		bad := buildZip(t, s.host, packtest.Build(t, "testdata/packs/notes", map[string]string{"release": "3", "failAt": "3", "extra": "1"}))
		code, out := s.install(nil, nil, bad)
		if code != 1 || !strings.Contains(out, "upgrade the database") || !strings.Contains(out, "the old versions were put back") ||
			strings.Contains(out, "putting things back failed") {
			t.Fatalf("exit %d, want 1 naming the failed upgrade:\n%s", code, out)
		}
		if !strings.Contains(out, "tables the install added were dropped") {
			t.Errorf("no notes_extra was dropped, so the test proves nothing:\n%s", out)
		}
		ziptest.AssertSame(t, baseline, dbSnapshot(t, s.target()))
		s.wantNotes("1.2.0", 2)
		s.wantClean()
		if p := pendingNames(t, s.root, system.PendingDir); len(p) != 1 || p[0] != "notes-1.3.0.zip" {
			t.Errorf("pending: %v, want the zip still there", p)
		}
		if inst := pendingNames(t, s.root, system.InstalledDir); len(inst) != 2 { // core and notes 1.2.0
			t.Errorf("Updates_Installed: %v", inst)
		}

		t.Run("and when the host is stopped during the upgrade", func(t *testing.T) {
			hang := buildZip(t, s.host, packtest.Build(t, "testdata/packs/notes", map[string]string{"release": "3", "hangAt": "3", "extra": "1"}))
			code, out := s.installStopped(hang, "notes 3")
			if code != 1 || !strings.Contains(out, "the old versions were put back") || strings.Contains(out, "putting things back failed") {
				t.Fatalf("exit %d, want 1 with everything put back:\n%s", code, out)
			}
			ziptest.AssertSame(t, baseline, dbSnapshot(t, s.target()))
			s.wantNotes("1.2.0", 2)
			s.wantClean()
		})

		good := buildZip(t, s.host, packtest.Build(t, "testdata/packs/notes", map[string]string{"release": "3", "extra": "1"}))
		if code, out := s.install(nil, nil, good); code != 0 {
			t.Fatalf("install notes 1.3.0 after the rollback: exit %d\n%s", code, out)
		}
		tables := map[string]string{}
		for _, p := range s.status().Packs {
			for _, tb := range p.Tables {
				tables[tb.Name] = fmt.Sprintf("%d %s", tb.InstalledVersion, tb.State)
			}
		}
		if tables["notes"] != "3 ok" || tables["notes_extra"] != "1 ok" {
			t.Errorf("tables after the install: %v, want notes 3 ok and notes_extra 1 ok", tables)
		}
		s.wantClean()
	})
}

// installStopped runs `host pack install zip` and sends the host SIGTERM
// once a steps.log under packs/ names the step mark.
func (s sys) installStopped(zip, mark string) (int, string) {
	s.t.Helper()
	cmd := exec.Command(s.host, "pack", "install", "--root", s.root, "--db", s.db, zip)
	var buf bytes.Buffer
	cmd.Stdout, cmd.Stderr = &buf, &buf
	if err := cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	deadline := time.After(2 * time.Minute)
	for reached := false; !reached; {
		select {
		case err := <-waited:
			s.t.Fatalf("the install ended (%v) before reaching %q:\n%s", err, mark, buf.String())
		case <-deadline:
			cmd.Process.Kill()
			<-waited
			s.t.Fatalf("the install did not reach %q:\n%s", mark, buf.String())
		case <-time.After(50 * time.Millisecond):
		}
		logs, _ := filepath.Glob(filepath.Join(s.root, "packs", "*", "bin", "steps.log"))
		for _, l := range logs {
			if data, _ := os.ReadFile(l); strings.Contains(string(data), mark+"\n") {
				reached = true
			}
		}
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		s.t.Fatal(err)
	}
	err := <-waited
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		s.t.Fatal(err)
	}
	return cmd.ProcessState.ExitCode(), buf.String()
}

func TestInstallRefusesABinaryThatReportsAnotherVersion(t *testing.T) {
	t.Run("on sqlite", func(t *testing.T) {
		s := newSystem(t, "")
		// A manifest saying 1.3.0 around the 1.2.0 binary, checksums right.
		bin := packtest.Build(t, "testdata/packs/notes", map[string]string{"release": "2"})
		data, err := os.ReadFile(bin)
		if err != nil {
			t.Fatal(err)
		}
		m := ziptest.GoodManifest("notes", "1.3.0", data)
		m.DependsOn = []string{"core"}
		lying := filepath.Join(t.TempDir(), "notes-1.3.0.zip")
		ziptest.WriteZip(t, lying, []ziptest.Entry{ziptest.ManifestEntry(t, m), {Name: m.Binaries[manifest.Platform()].Path, Data: data, Mode: 0o755}})
		before := ziptest.Snapshot(t, filepath.Join(s.root, "packs"))
		code, out := s.install(nil, nil, lying)
		if code != 1 || !strings.Contains(out, "binary does not match its manifest: manifest says notes 1.3.0, binary reports notes 1.2.0") {
			t.Fatalf("exit %d, want 1 naming the identity mismatch:\n%s", code, out)
		}
		ziptest.AssertSame(t, before, ziptest.Snapshot(t, filepath.Join(s.root, "packs")))
		s.wantNotes("1.2.0", 2)
		s.wantClean()
		// Refused before anything changed (the binary is asked who it is
		// before the backup): the copy goes, the zip given stays.
		if p := pendingNames(t, s.root, system.PendingDir); len(p) != 0 {
			t.Errorf("pending: %v, want the refused copy gone", p)
		}
		if _, err := os.Stat(lying); err != nil {
			t.Errorf("the zip given to pack install: %v", err)
		}
		if b := pendingNames(t, s.root, system.BackupsDir); len(b) != 0 {
			t.Errorf("backups %v: a zip refused before the install needs none", b)
		}
	})
}

// TestInstallNeedsOnlyItsOwnPacksToStart installs notes 1.3.0 on a system
// where an unrelated pack (crash) does not start and the installed notes
// does not start either (its binary was damaged). With the database
// backup the install stops before writing anything and says to pass
// --no-backup; with --no-backup it installs, and the unrelated pack that
// does not start is only logged.
func TestInstallNeedsOnlyItsOwnPacksToStart(t *testing.T) {
	t.Run("on sqlite", func(t *testing.T) {
		s := newSystem(t, "")
		crash := buildZip(t, s.host, packtest.Build(t, "testdata/packs/crash", nil))
		z := updatezip.InspectZip(crash, nil, nil, updatezip.Options{})
		if !z.OK() {
			t.Fatal(z.Err())
		}
		if err := updatezip.Extract(z, filepath.Join(s.root, "packs", "crash"), updatezip.DefaultLimits); err != nil {
			t.Fatal(err)
		}
		bins, _ := filepath.Glob(filepath.Join(s.root, "packs", "notes", "bin", "notes-*"))
		if len(bins) != 1 {
			t.Fatalf("notes binaries: %v", bins)
		}
		if err := os.WriteFile(bins[0], []byte("#!/bin/sh\nexit 1\n"), 0o755); err != nil {
			t.Fatal(err)
		}
		zip3 := buildZip(t, s.host, packtest.Build(t, "testdata/packs/notes", map[string]string{"release": "3"}))
		if err := copyFile(zip3, filepath.Join(s.root, system.PendingDir, "notes-1.3.0.zip")); err != nil {
			t.Fatal(err)
		}
		before := filesOutsideData(t, s.root)
		code, out := s.install(nil, nil)
		if code != 1 || !strings.Contains(out, "back up pack notes: its installed version is not running") ||
			!strings.Contains(out, "pass --no-backup to install over it") {
			t.Fatalf("exit %d, want 1 saying to pass --no-backup:\n%s", code, out)
		}
		ziptest.AssertSame(t, before, filesOutsideData(t, s.root))
		if b := pendingNames(t, s.root, system.BackupsDir); len(b) != 0 {
			t.Errorf("backups written by a refused install: %v", b)
		}

		code, out = s.install(nil, []string{"--no-backup"})
		if code != 0 {
			t.Fatalf("install --no-backup: exit %d\n%s", code, out)
		}
		if !strings.Contains(out, "a pack the install does not need did not start") || !strings.Contains(out, "crash") {
			t.Errorf("the crash pack's start failure was not logged:\n%s", out)
		}
		s.wantNotes("1.3.0", 3)
		s.wantClean()
	})
}
