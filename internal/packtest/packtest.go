// Package packtest builds the host and pack binaries that tests run as real
// subprocesses, once per test binary, and installs packs into throw-away
// system directories.
//
// A test package that uses it calls packtest.Main from its TestMain so the
// build directory is removed at the end.
package packtest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/packhost/packhost/host/manifest"
	"github.com/packhost/packhost/host/packs"
)

var (
	dirOnce sync.Once
	dir     string
	dirErr  error

	mu     sync.Mutex
	builds = map[string]*build{}
)

type build struct {
	once sync.Once
	path string
	err  error
}

// Main runs the tests and removes the built binaries.
func Main(m interface{ Run() int }) {
	code := m.Run()
	if dir != "" {
		_ = os.RemoveAll(dir)
	}
	os.Exit(code)
}

// ModuleRoot is the repository's root directory.
func ModuleRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// Build compiles the main package pkg (a path relative to the module root,
// like "plugins/core" or "testdata/packs/notes"), with the given -X
// variables of package main, and returns the binary. Identical builds are
// made once per test binary.
func Build(t testing.TB, pkg string, vars map[string]string) string {
	t.Helper()
	dirOnce.Do(func() { dir, dirErr = os.MkdirTemp("", "packtest-") })
	if dirErr != nil {
		t.Fatal(dirErr)
	}
	var keys []string
	for k := range vars {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var ld []string
	for _, k := range keys {
		ld = append(ld, fmt.Sprintf("-X main.%s=%s", k, vars[k]))
	}
	key := pkg + "|" + strings.Join(ld, " ")
	mu.Lock()
	b, ok := builds[key]
	if !ok {
		b = &build{}
		builds[key] = b
	}
	mu.Unlock()
	b.once.Do(func() {
		sum := sha256.Sum256([]byte(key))
		b.path = filepath.Join(dir, filepath.Base(pkg)+"-"+hex.EncodeToString(sum[:6]))
		// Packs are built as `make build` builds them: without the symbol
		// table and DWARF, which makes them a third smaller and faster to
		// hash and start.
		args := []string{"build", "-o", b.path, "-ldflags", strings.Join(append([]string{"-s", "-w"}, ld...), " ")}
		args = append(args, "./"+pkg)
		cmd := exec.Command("go", args...)
		cmd.Dir = ModuleRoot()
		if out, err := cmd.CombinedOutput(); err != nil {
			b.err = fmt.Errorf("go build %s: %v\n%s", pkg, err, out)
		}
	})
	if b.err != nil {
		t.Fatal(b.err)
	}
	return b.path
}

// Host builds cmd/host.
func Host(t testing.TB) string { return Build(t, "cmd/host", nil) }

// NewRoot makes an empty system directory.
func NewRoot(t testing.TB) string {
	t.Helper()
	return t.TempDir()
}

// Install installs the pack binary into root as `host pack dev-install`
// does, and returns its manifest.
func Install(t testing.TB, root, binary string) *manifest.Manifest {
	t.Helper()
	l, err := packs.NewLauncher(packs.Config{StartTimeout: 20 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	m, err := packs.DevInstall(context.Background(), l, filepath.Join(root, packs.Dir), binary)
	if err != nil {
		t.Fatalf("install %s: %v", binary, err)
	}
	return m
}

// Result is what a host command printed and its exit code.
type Result struct {
	Stdout, Stderr string
	Code           int
}

// RunHost runs the host binary with args and returns its output and exit
// code; it fails the test only when the binary cannot be run.
func RunHost(t testing.TB, args ...string) Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, Host(t), args...)
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			t.Fatalf("run host %v: %v", args, err)
		}
		code = ee.ExitCode()
	}
	return Result{Stdout: stdout.String(), Stderr: stderr.String(), Code: code}
}
