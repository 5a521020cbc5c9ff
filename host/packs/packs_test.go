package packs_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/packhost/packhost/host/manifest"
	"github.com/packhost/packhost/host/packs"
	"github.com/packhost/packhost/internal/dbtest"
	"github.com/packhost/packhost/internal/packtest"
)

// envDial makes the test binary, re-executed as another user, dial the
// unix socket it names and print the outcome instead of running tests.
const envDial = "PACKHOST_TEST_DIAL_SOCKET"

func TestMain(m *testing.M) {
	if sock := os.Getenv(envDial); sock != "" {
		c, err := net.Dial("unix", sock)
		if err != nil {
			fmt.Printf("dial: %v\n", err)
			os.Exit(3)
		}
		c.Close()
		fmt.Println("dial: connected")
		os.Exit(0)
	}
	packtest.Main(m)
}

// installed installs the given test packs (ids of repo packs) into a fresh
// root and discovers them.
func installed(t *testing.T, pkgs ...string) (string, []packs.Installed) {
	t.Helper()
	root := packtest.NewRoot(t)
	for _, pkg := range pkgs {
		packtest.Install(t, root, packtest.Build(t, pkg, nil))
	}
	list, err := packs.Discover(root)
	if err != nil {
		t.Fatal(err)
	}
	return root, list
}

func newLauncher(t *testing.T, cfg packs.Config) *packs.Launcher {
	t.Helper()
	l, err := packs.NewLauncher(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(l.Close)
	return l
}

func ids(list []*packs.Pack) []string {
	var out []string
	for _, p := range list {
		out = append(out, p.ID)
	}
	return out
}

// snapshot lists every file under dir with its size and mode, to show that
// nothing changed on disk.
func snapshot(t *testing.T, dir string) string {
	t.Helper()
	var b strings.Builder
	err := filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		fmt.Fprintf(&b, "%s %d %s %d\n", p, fi.Size(), fi.Mode(), fi.ModTime().UnixNano())
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func TestStartAll(t *testing.T) {
	t.Run("a binary whose sha256 differs from its manifest is refused and the others start", func(t *testing.T) {
		root, list := installed(t, "plugins/core", "testdata/packs/notes")
		var notes packs.Installed
		for _, p := range list {
			if p.ID == "notes" {
				notes = p
			}
		}
		f, err := os.OpenFile(notes.Binary, os.O_APPEND|os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.Write([]byte("tampered")); err != nil {
			t.Fatal(err)
		}
		f.Close()
		actual, err := packs.FileSHA256(notes.Binary)
		if err != nil {
			t.Fatal(err)
		}
		before := snapshot(t, root)

		l := newLauncher(t, packs.Config{})
		started, failed := l.StartAll(context.Background(), list)
		if got := ids(started); !slices.Equal(got, []string{"core"}) {
			t.Errorf("started %v, want [core]", got)
		}
		if len(failed) != 1 {
			t.Fatalf("failed = %v, want one error", failed)
		}
		msg := failed[0].Error()
		for _, want := range []string{"pack notes did not start", "sha256 mismatch", "manifest " + notes.SHA256, "file " + actual, "was not run"} {
			if !strings.Contains(msg, want) {
				t.Errorf("error %q does not contain %q", msg, want)
			}
		}
		if !errors.Is(failed[0], packs.ErrChecksum) {
			t.Errorf("error %v is not ErrChecksum", failed[0])
		}
		var se *packs.StartError
		if !errors.As(failed[0], &se) || se.ID != "notes" {
			t.Errorf("error %#v is not a StartError for notes", failed[0])
		}
		if pids := packtest.PackProcs(os.Getpid(), filepath.Dir(notes.Binary)); len(pids) != 0 {
			t.Errorf("the refused binary runs as %v", pids)
		}
		if after := snapshot(t, root); after != before {
			t.Errorf("the system directory changed:\nbefore:\n%s\nafter:\n%s", before, after)
		}
	})

	t.Run("a pack that crashes or never handshakes is named with its stderr and stopped", func(t *testing.T) {
		root, list := installed(t, "plugins/core", "testdata/packs/crash", "testdata/packs/hang")
		l := newLauncher(t, packs.Config{StartTimeout: 2 * time.Second})
		done := make(chan struct{})
		var started []*packs.Pack
		var failed []error
		go func() {
			defer close(done)
			started, failed = l.StartAll(context.Background(), list)
		}()
		select {
		case <-done:
		case <-time.After(time.Minute):
			t.Fatal("StartAll did not return")
		}
		if got := ids(started); !slices.Equal(got, []string{"core"}) {
			t.Errorf("started %v, want [core]", got)
		}
		byID := map[string]string{}
		for _, err := range failed {
			var se *packs.StartError
			if !errors.As(err, &se) {
				t.Fatalf("error %v is not a StartError", err)
			}
			byID[se.ID] = err.Error()
		}
		for id, wants := range map[string][]string{
			"crash": {"pack crash did not start", "exited before completing its handshake", "crash: cannot read settings: permission denied (test pack)"},
			"hang":  {"pack hang did not start", "no handshake within 2s", "hang: waiting for a lock that never comes (test pack)"},
		} {
			msg, ok := byID[id]
			if !ok {
				t.Errorf("no error for %s; errors: %v", id, failed)
				continue
			}
			for _, want := range wants {
				if !strings.Contains(msg, want) {
					t.Errorf("%s: error %q does not contain %q", id, msg, want)
				}
			}
		}
		if len(failed) != 2 {
			t.Errorf("failed = %v, want 2 errors", failed)
		}
		for _, id := range []string{"crash", "hang"} {
			if pids := packtest.PackProcs(os.Getpid(), filepath.Join(root, packs.Dir, id)); len(pids) != 0 {
				t.Errorf("pack %s still runs as %v after its start failed", id, pids)
			}
		}
	})

	t.Run("a binary reporting another version than its manifest is refused with both versions", func(t *testing.T) {
		root, _ := installed(t, "testdata/packs/notes")
		mpath := filepath.Join(root, packs.Dir, "notes", manifest.FileName)
		m, err := manifest.Load(mpath)
		if err != nil {
			t.Fatal(err)
		}
		m.Version = "9.9.9"
		data, err := m.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(mpath, data, 0o644); err != nil {
			t.Fatal(err)
		}
		list, err := packs.Discover(root) // with the edited manifest
		if err != nil {
			t.Fatal(err)
		}
		before := snapshot(t, root)
		l := newLauncher(t, packs.Config{})
		_, err = l.Start(context.Background(), list[0])
		if !errors.Is(err, packs.ErrIdentity) {
			t.Fatalf("Start = %v, want ErrIdentity", err)
		}
		want := "pack notes did not start: binary does not match its manifest: manifest says notes 9.9.9, binary reports notes 1.3.0"
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not contain %q", err, want)
		}
		if pids := packtest.PackProcs(os.Getpid(), root); len(pids) != 0 {
			t.Errorf("the refused pack still runs as %v", pids)
		}
		if after := snapshot(t, root); after != before {
			t.Errorf("the system directory changed:\nbefore:\n%s\nafter:\n%s", before, after)
		}
	})
}

func TestClose(t *testing.T) {
	dbtest.ForEach(t, func(t *testing.T, db dbtest.DB) {
		root, list := installed(t, "plugins/core", "testdata/packs/notes")
		l, err := packs.NewLauncher(packs.Config{DB: db.Target, HasDB: true})
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		started, failed := l.StartAll(context.Background(), list)
		if len(failed) > 0 || len(started) != 2 {
			t.Fatalf("started %v, failed %v", ids(started), failed)
		}
		// The packs have opened the database: CheckSchema reads it.
		for _, p := range started {
			if _, err := p.CheckSchema(context.Background()); err != nil {
				t.Fatalf("%s: check schema: %v", p.ID, err)
			}
		}
		pids := packtest.PackProcs(os.Getpid(), root)
		if len(pids) != 2 {
			t.Fatalf("pack processes under %s: %v, want 2", root, pids)
		}
		l.Close()
		for _, pid := range pids {
			if packtest.Alive(pid) {
				t.Errorf("pack process %d still runs after Close", pid)
			}
		}
		for _, p := range started {
			if !p.Exited() {
				t.Errorf("pack %s has not exited", p.ID)
			}
		}
		if _, err := os.Stat(l.SocketDir()); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("socket directory %s left behind: %v", l.SocketDir(), err)
		}
		if _, err := l.Start(context.Background(), list[0]); err == nil || !strings.Contains(err.Error(), "host is shutting down") {
			t.Errorf("Start after Close = %v, want a refusal", err)
		}
	})
}

// TestTransportIsPrivate shows that another local user cannot connect to a
// pack's socket while the host's own user can.
func TestTransportIsPrivate(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to run a connection attempt as the user nobody; run the tests as root (CI does)")
	}
	nobody, err := user.Lookup("nobody")
	if err != nil {
		t.Skipf("no user nobody on this system: %v", err)
	}
	uid, _ := strconv.Atoi(nobody.Uid)
	gid, _ := strconv.Atoi(nobody.Gid)

	_, list := installed(t, "plugins/core")
	l := newLauncher(t, packs.Config{})
	p, err := l.Start(context.Background(), list[0])
	if err != nil {
		t.Fatal(err)
	}
	addr, ok := p.Addr().(*net.UnixAddr)
	if !ok {
		t.Fatalf("pack address %v (%T) is not a unix socket", p.Addr(), p.Addr())
	}
	if filepath.Dir(addr.Name) != l.SocketDir() {
		t.Errorf("socket %s is not in the launcher's directory %s", addr.Name, l.SocketDir())
	}
	fi, err := os.Stat(l.SocketDir())
	if err != nil {
		t.Fatal(err)
	}
	if mode := fi.Mode().Perm(); mode != 0o700 {
		t.Errorf("socket directory mode %v, want 0700", mode)
	}

	// The test binary sits in a directory only root may enter: copy it
	// where nobody can run it.
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "packhost-dial-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	exe := filepath.Join(dir, "dial.test")
	data, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(exe, data, 0o755); err != nil {
		t.Fatal(err)
	}

	dial := func(cred *syscall.Credential) (string, error) {
		cmd := exec.Command(exe)
		cmd.Env = []string{envDial + "=" + addr.Name}
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
		out, err := cmd.CombinedOutput()
		return strings.TrimSpace(string(out)), err
	}
	t.Run("the user nobody is refused", func(t *testing.T) {
		out, err := dial(&syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)})
		if err == nil || !strings.Contains(out, "permission denied") {
			t.Errorf("dial as nobody: %v, output %q; want permission denied", err, out)
		}
	})
	t.Run("the host's own user connects", func(t *testing.T) {
		out, err := dial(nil)
		if err != nil || out != "dial: connected" {
			t.Errorf("dial as root: %v, output %q", err, out)
		}
	})
	// The pack still answers after both attempts.
	if _, err := p.CheckSchema(context.Background()); err != nil {
		t.Errorf("pack after the dial attempts: %v", err)
	}
}
