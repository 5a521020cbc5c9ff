package install

import (
	"bytes"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/packhost/packhost/host/manifest"
	"github.com/packhost/packhost/host/system"
	"github.com/packhost/packhost/internal/dbtest"
	"github.com/packhost/packhost/internal/packtest"
)

// EnvKillTests turns on the repeated-kill suites (make test-slow).
const EnvKillTests = "PACKHOST_KILL_TESTS"

// interrupted puts zip into Updates_Pending of a copy of tmpl, runs `host
// pack install` (which installs what is pending), sends sig after a random
// part of took, and returns the copy, the exit code and how long the host
// took to end after the signal.
func interrupted(t *testing.T, tmpl sys, zip string, took time.Duration, sig syscall.Signal) (sys, int, time.Duration, string) {
	t.Helper()
	s := copyOf(t, tmpl)
	if err := copyFile(zip, filepath.Join(s.root, system.PendingDir, filepath.Base(zip))); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(s.host, "pack", "install", "--root", s.root, "--db", s.db)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	select {
	case <-time.After(time.Duration(rand.Int64N(int64(took)))):
	case <-done:
	}
	sent := time.Now()
	_ = cmd.Process.Signal(sig)
	select {
	case <-done:
	case <-time.After(2 * time.Minute):
		_ = cmd.Process.Kill()
		<-done
		t.Fatalf("the host did not end within 2 minutes of %s:\n%s", sig, out.String())
	}
	code := cmd.ProcessState.ExitCode()
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		code = -int(ws.Signal())
	}
	return s, code, time.Since(sent), out.String()
}

// wantWhole recovers s and checks that notes is wholly 1.2.0 (the zip
// pending) or wholly 1.3.0 (the zip installed), nothing left over.
func (s sys) wantWhole(what string) {
	s.t.Helper()
	if code, out := s.install(nil, []string{"--recover-only"}); code != 0 {
		s.t.Fatalf("%s, then a restart: exit %d\n%s", what, code, out)
	}
	s.wantClean()
	m, err := manifest.Load(filepath.Join(s.root, "packs", "notes", manifest.FileName))
	if err != nil {
		s.t.Fatal(err)
	}
	pending := pendingNames(s.t, s.root, system.PendingDir)
	switch m.Version {
	case "1.3.0":
		s.wantNotes("1.3.0", 3)
		if len(pending) != 0 {
			s.t.Errorf("%s: installed, yet still pending: %v", what, pending)
		}
	case "1.2.0":
		s.wantNotes("1.2.0", 2)
		if len(pending) != 1 {
			s.t.Errorf("%s: undone, yet pending holds %v", what, pending)
		}
	default:
		s.t.Fatalf("%s: notes %s installed", what, m.Version)
	}
}

// timeInstall measures one whole install of zip on a copy of tmpl.
func timeInstall(t *testing.T, tmpl sys, zip string) time.Duration {
	t.Helper()
	s := copyOf(t, tmpl)
	if err := copyFile(zip, filepath.Join(s.root, system.PendingDir, filepath.Base(zip))); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if code, out := s.install(nil, nil); code != 0 {
		t.Fatalf("install: exit %d\n%s", code, out)
	}
	return time.Since(start)
}

// TestRandomKillsLeaveAWholeVersion kills `host pack install` with
// SIGKILL at 25 random moments per database; after each, a restart leaves
// notes wholly one version.
func TestRandomKillsLeaveAWholeVersion(t *testing.T) {
	if os.Getenv(EnvKillTests) != "1" {
		t.Skipf("the repeated-kill suite runs with %s=1 (make test-slow)", EnvKillTests)
	}
	dbtest.ForEach(t, func(t *testing.T, db dbtest.DB) {
		tmpl := templateSystem(t, db)
		zip3 := buildZip(t, tmpl.host, packtest.Build(t, "testdata/packs/notes", map[string]string{"release": "3"}))
		took := timeInstall(t, tmpl, zip3)
		for i := range 25 {
			s, code, _, out := interrupted(t, tmpl, zip3, took, syscall.SIGKILL)
			if code != -int(syscall.SIGKILL) && code != 0 {
				t.Fatalf("kill %d: exit %d\n%s", i, code, out)
			}
			s.wantWhole("a kill")
		}
	})
}

// TestRandomStopsEndWithinABoundedTime sends SIGTERM to `host pack
// install` at 10 random moments per database (20 in all): each time the
// host ends within StopTimeout and a few seconds, having put things back
// (exit 1), finished (exit 0) or left the rest to the next start, which
// leaves notes wholly one version.
func TestRandomStopsEndWithinABoundedTime(t *testing.T) {
	if os.Getenv(EnvKillTests) != "1" {
		t.Skipf("the repeated-stop suite runs with %s=1 (make test-slow)", EnvKillTests)
	}
	dbtest.ForEach(t, func(t *testing.T, db dbtest.DB) {
		tmpl := templateSystem(t, db)
		zip3 := buildZip(t, tmpl.host, packtest.Build(t, "testdata/packs/notes", map[string]string{"release": "3"}))
		took := timeInstall(t, tmpl, zip3)
		for i := range 10 {
			s, code, ended, out := interrupted(t, tmpl, zip3, took, syscall.SIGTERM)
			if ended > StopTimeout+10*time.Second {
				t.Errorf("stop %d: the host took %s to end after SIGTERM", i, ended)
			}
			// 1: stopped and put back; 0: it had finished; killed by the
			// signal itself: it came before the host was listening for it.
			if code != 0 && code != 1 && code != -int(syscall.SIGTERM) {
				t.Fatalf("stop %d: exit %d\n%s", i, code, out)
			}
			s.wantWhole("a stop")
		}
	})
}
