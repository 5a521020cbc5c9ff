package cli_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/packhost/packhost/host/packs"
	"github.com/packhost/packhost/internal/dbconn"
	"github.com/packhost/packhost/internal/dbtest"
	"github.com/packhost/packhost/internal/packtest"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

func TestMain(m *testing.M) {
	flag.Parse()
	packtest.Main(m)
}

// system makes a system directory with the given repo packs installed.
func system(t *testing.T, pkgs ...string) string {
	t.Helper()
	root := packtest.NewRoot(t)
	for _, pkg := range pkgs {
		packtest.Install(t, root, packtest.Build(t, pkg, nil))
	}
	return root
}

// dbArgs is the --db flag for db: none for SQLite, so the host uses its
// embedded database in the system directory.
func dbArgs(db dbtest.DB) []string {
	if db.Name == dbconn.Postgres {
		return []string{"--db", db.Target.DSN}
	}
	return nil
}

type result struct {
	stdout, stderr string
	code           int
}

// host runs the host binary to its end.
func host(t *testing.T, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, packtest.Host(t), args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	code := 0
	switch {
	case errors.As(err, &exit):
		code = exit.ExitCode()
	case err != nil:
		t.Fatalf("host %v: %v", args, err)
	}
	return result{stdout.String(), stderr.String(), code}
}

// statusJSON is the contract part of `host status --json`.
type statusJSON struct {
	Packs []struct {
		ID      string `json:"id"`
		Version string `json:"version"`
		Path    string `json:"path"`
		Running bool   `json:"running"`
		Error   string `json:"error"`
		Tables  []struct {
			Name             string `json:"name"`
			InstalledVersion *int   `json:"installed_version"`
			CodeVersion      *int   `json:"code_version"`
			State            string `json:"state"`
		} `json:"tables"`
	} `json:"packs"`
	PendingUpdates []any    `json:"pending_updates"`
	Problems       []string `json:"problems"`
	ExitCode       *int     `json:"exit_code"`
}

func status(t *testing.T, root string, db dbtest.DB, extra ...string) (statusJSON, result) {
	t.Helper()
	r := host(t, append(append([]string{"status", "--json", "--root", root}, dbArgs(db)...), extra...)...)
	var s statusJSON
	if err := json.Unmarshal([]byte(r.stdout), &s); err != nil {
		t.Fatalf("status --json: %v\nstdout:\n%s\nstderr:\n%s", err, r.stdout, r.stderr)
	}
	if s.ExitCode == nil || *s.ExitCode != r.code {
		t.Errorf("status --json: exit_code %v in the JSON, process exited %d", s.ExitCode, r.code)
	}
	if s.PendingUpdates == nil {
		t.Errorf("status --json: pending_updates is absent or null, want a list:\n%s", r.stdout)
	}
	return s, r
}

// normalize replaces what changes from run to run in a report.
func normalize(s, root string, db dbtest.DB) string {
	if db.Name == dbconn.Postgres {
		s = strings.ReplaceAll(s, dbconn.Redact(db.Target.DSN), "<DSN>")
		s = strings.ReplaceAll(s, db.Target.DSN, "<DSN>")
	}
	return strings.ReplaceAll(s, root, "<ROOT>")
}

func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./host/cli -run %s -update to write it)", err, t.Name())
	}
	if got != string(want) {
		t.Errorf("%s differs (run with -update if the change is intended)\n--- want\n%s\n--- got\n%s", path, want, got)
	}
}

// tree lists every file under dir with its size and modification time, to
// show that a command changed nothing on disk.
func tree(t *testing.T, dir string) string {
	t.Helper()
	var b strings.Builder
	err := filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		fmt.Fprintf(&b, "%s %d %d\n", p, fi.Size(), fi.ModTime().UnixNano())
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func tamper(t *testing.T, root, id string) {
	t.Helper()
	list, err := packs.Discover(root)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range list {
		if p.ID == id {
			f, err := os.OpenFile(p.Binary, os.O_APPEND|os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if _, err := f.Write([]byte("tampered")); err != nil {
				t.Fatal(err)
			}
			return
		}
	}
	t.Fatalf("pack %s is not installed in %s", id, root)
}

func TestStatusOfAFreshDatabase(t *testing.T) {
	dbtest.ForEach(t, func(t *testing.T, db dbtest.DB) {
		root := system(t, "plugins/core", "testdata/packs/notes")
		before := tree(t, root)

		s, r := status(t, root, db)
		if r.code != 4 {
			t.Errorf("status --json exited %d, want 4\nstderr:\n%s", r.code, r.stderr)
		}
		if len(s.Packs) != 2 || s.Packs[0].ID != "core" || s.Packs[1].ID != "notes" {
			t.Fatalf("packs %+v, want core then notes", s.Packs)
		}
		for _, p := range s.Packs {
			if p.Version == "" || p.Path != filepath.Join(root, packs.Dir, p.ID) || !p.Running {
				t.Errorf("pack %+v: want a version, path %s, running", p, filepath.Join(root, packs.Dir, p.ID))
			}
			if len(p.Tables) == 0 {
				t.Errorf("pack %s reports no tables", p.ID)
			}
			for _, tb := range p.Tables {
				if tb.Name == "" || tb.InstalledVersion == nil || *tb.InstalledVersion != 0 ||
					tb.CodeVersion == nil || *tb.CodeVersion < 1 || tb.State != "missing" {
					t.Errorf("pack %s table %+v: want installed_version 0, a code_version, state missing", p.ID, tb)
				}
			}
		}
		if len(s.PendingUpdates) != 0 || len(s.Problems) != 0 {
			t.Errorf("pending %v, problems %v: want none", s.PendingUpdates, s.Problems)
		}
		golden(t, "status_fresh_"+db.Name+".json", normalize(r.stdout, root, db))

		text := host(t, append([]string{"status", "--root", root}, dbArgs(db)...)...)
		if text.code != 4 {
			t.Errorf("status exited %d, want 4\nstderr:\n%s", text.code, text.stderr)
		}
		golden(t, "status_fresh_"+db.Name+".txt", normalize(text.stdout, root, db))

		if after := tree(t, root); after != before {
			t.Errorf("status changed the system directory:\nbefore:\n%s\nafter:\n%s", before, after)
		}
		var n int64
		if err := db.Gorm.Raw(countTables(db)).Scan(&n).Error; err != nil {
			t.Fatal(err)
		}
		if n != 0 {
			t.Errorf("status created %d tables in the database", n)
		}
	})
}

// countTables counts the user tables of a database.
func countTables(db dbtest.DB) string {
	if db.Name == dbconn.Postgres {
		return "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'"
	}
	return "SELECT count(*) FROM sqlite_master WHERE type = 'table'"
}

// running is a `host run` in progress.
type running struct {
	cmd    *exec.Cmd
	mu     sync.Mutex
	stderr bytes.Buffer
	done   chan struct{}
	code   int
}

func (r *running) log() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.stderr.String()
}

// startHost starts `host run` and waits until it serves.
func startHost(t *testing.T, args ...string) *running {
	t.Helper()
	cmd := exec.Command(packtest.Host(t), append([]string{"run", "--addr", "127.0.0.1:0"}, args...)...)
	pipe, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	r := &running{cmd: cmd, done: make(chan struct{})}
	cmd.Stdout = &r.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	serving := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(pipe)
		once := sync.Once{}
		for sc.Scan() {
			r.mu.Lock()
			r.stderr.WriteString(sc.Text() + "\n")
			r.mu.Unlock()
			if strings.Contains(sc.Text(), "serving") {
				once.Do(func() { close(serving) })
			}
		}
		_, _ = io.Copy(io.Discard, pipe)
		err := cmd.Wait()
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			r.code = exit.ExitCode()
			if ws, ok := exit.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
				r.code = -int(ws.Signal())
			}
		}
		close(r.done)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-r.done
	})
	select {
	case <-serving:
	case <-r.done:
		t.Fatalf("host run exited %d before serving:\n%s", r.code, r.log())
	case <-time.After(2 * time.Minute):
		t.Fatalf("host run does not serve:\n%s", r.log())
	}
	return r
}

func (r *running) wait(t *testing.T) int {
	t.Helper()
	select {
	case <-r.done:
		return r.code
	case <-time.After(time.Minute):
		t.Fatalf("host run did not exit:\n%s", r.log())
	}
	return 0
}

func TestRunUpdateDBOnAFreshDatabase(t *testing.T) {
	dbtest.ForEach(t, func(t *testing.T, db dbtest.DB) {
		root := system(t, "plugins/core", "testdata/packs/notes")
		h := startHost(t, append([]string{"--root", root, "--update-db"}, dbArgs(db)...)...)
		pids := packtest.PackProcs(h.cmd.Process.Pid, root)
		if len(pids) != 2 {
			t.Errorf("pack processes of the host: %v, want 2 (core, notes)", pids)
		}
		if err := h.cmd.Process.Signal(os.Interrupt); err != nil {
			t.Fatal(err)
		}
		if code := h.wait(t); code != 0 {
			t.Errorf("host run exited %d after SIGINT, want 0:\n%s", code, h.log())
		}
		for _, pid := range pids {
			if packtest.Alive(pid) {
				t.Errorf("pack process %d outlived the host", pid)
			}
		}
		if left := packtest.PackProcs(-1, root); len(left) > 0 {
			t.Errorf("pack processes left: %v", left)
		}

		s, r := status(t, root, db)
		if r.code != 0 {
			t.Errorf("status after --update-db exited %d, want 0:\n%s\n%s", r.code, r.stdout, r.stderr)
		}
		tables := 0
		for _, p := range s.Packs {
			for _, tb := range p.Tables {
				tables++
				if tb.State != "ok" || *tb.InstalledVersion != *tb.CodeVersion {
					t.Errorf("%s.%s: installed %d, code %d, state %s; want ok", p.ID, tb.Name, *tb.InstalledVersion, *tb.CodeVersion, tb.State)
				}
			}
		}
		if tables != 3 {
			t.Errorf("status reports %d tables, want 3 (users, audit_log, notes)", tables)
		}
	})
}

func TestRunStopsPacksWhenItExitsOnAnError(t *testing.T) {
	dbtest.ForEach(t, func(t *testing.T, db dbtest.DB) {
		root := system(t, "plugins/core", "testdata/packs/notes")
		t.Run("database updates needed", func(t *testing.T) {
			r := host(t, append([]string{"run", "--root", root, "--addr", "127.0.0.1:0"}, dbArgs(db)...)...)
			if r.code != 4 || !strings.Contains(r.stdout, "database updates are needed") {
				t.Errorf("host run exited %d, want 4 with the report:\n%s\n%s", r.code, r.stdout, r.stderr)
			}
			if left := packtest.PackProcs(-1, root); len(left) > 0 {
				t.Errorf("pack processes left after the host exited: %v", left)
			}
		})
		t.Run("the core pack refused", func(t *testing.T) {
			tamper(t, root, "core")
			r := host(t, append([]string{"run", "--root", root, "--addr", "127.0.0.1:0", "--update-db"}, dbArgs(db)...)...)
			if r.code != 1 || !strings.Contains(r.stderr, "the core pack is not running") {
				t.Errorf("host run exited %d, want 1 naming the core pack:\n%s\n%s", r.code, r.stdout, r.stderr)
			}
			if left := packtest.PackProcs(-1, root); len(left) > 0 {
				t.Errorf("pack processes left after the host exited: %v", left)
			}
		})
	})
}

func TestStatusReportsARefusedBinary(t *testing.T) {
	dbtest.ForEach(t, func(t *testing.T, db dbtest.DB) {
		root := system(t, "plugins/core", "testdata/packs/notes")
		list, err := packs.Discover(root)
		if err != nil {
			t.Fatal(err)
		}
		tamper(t, root, "notes")
		var want, actual string
		for _, p := range list {
			if p.ID == "notes" {
				want = p.SHA256
				if actual, err = packs.FileSHA256(p.Binary); err != nil {
					t.Fatal(err)
				}
			}
		}
		before := tree(t, root)
		s, r := status(t, root, db)
		if r.code != 1 {
			t.Errorf("status exited %d, want 1", r.code)
		}
		for _, p := range s.Packs {
			switch p.ID {
			case "core":
				if !p.Running || len(p.Tables) == 0 {
					t.Errorf("core: running %v, tables %v; want it started and checked", p.Running, p.Tables)
				}
			case "notes":
				if p.Running {
					t.Error("notes runs despite its checksum")
				}
				for _, w := range []string{"pack notes did not start", "manifest " + want, "file " + actual} {
					if !strings.Contains(p.Error, w) {
						t.Errorf("notes error %q does not contain %q", p.Error, w)
					}
				}
			}
		}
		if len(s.Problems) != 1 || !strings.Contains(s.Problems[0], "sha256 mismatch (manifest "+want+", file "+actual+")") {
			t.Errorf("problems %q, want the checksum mismatch with both hashes", s.Problems)
		}
		text := host(t, append([]string{"status", "--root", root}, dbArgs(db)...)...)
		if text.code != 1 || !regexp.MustCompile(`(?m)^notes +1\.3\.0 +- +- +- +not running$`).MatchString(text.stdout) ||
			!strings.Contains(text.stdout, "Problem: pack notes did not start") {
			t.Errorf("status exited %d with:\n%s", text.code, text.stdout)
		}
		if after := tree(t, root); after != before {
			t.Errorf("status changed the system directory:\nbefore:\n%s\nafter:\n%s", before, after)
		}
	})
}

func TestStatusReportsPacksThatDoNotStart(t *testing.T) {
	dbtest.ForEach(t, func(t *testing.T, db dbtest.DB) {
		root := system(t, "plugins/core", "testdata/packs/crash", "testdata/packs/hang")
		s, r := status(t, root, db, "--start-timeout", "2s")
		if r.code != 1 {
			t.Errorf("status exited %d, want 1", r.code)
		}
		errs := map[string]string{}
		for _, p := range s.Packs {
			errs[p.ID] = p.Error
			if p.ID == "core" && !p.Running {
				t.Errorf("core did not run: %s", p.Error)
			}
		}
		for id, wants := range map[string][]string{
			"crash": {"pack crash did not start", "crash: cannot read settings: permission denied (test pack)"},
			"hang":  {"pack hang did not start", "no handshake within 2s", "hang: waiting for a lock that never comes (test pack)"},
		} {
			for _, w := range wants {
				if !strings.Contains(errs[id], w) {
					t.Errorf("%s: error %q does not contain %q", id, errs[id], w)
				}
			}
		}
		if left := packtest.PackProcs(-1, root); len(left) > 0 {
			t.Errorf("pack processes left after status: %v", left)
		}
	})
}

func TestSIGKILLOfTheHostLeavesNoPack(t *testing.T) {
	dbtest.ForEach(t, func(t *testing.T, db dbtest.DB) {
		root := system(t, "plugins/core", "testdata/packs/notes")
		h := startHost(t, append([]string{"--root", root, "--update-db"}, dbArgs(db)...)...)
		pids := packtest.PackProcs(h.cmd.Process.Pid, root)
		if len(pids) != 2 {
			t.Fatalf("pack processes of the host: %v, want 2", pids)
		}
		if err := h.cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		h.wait(t)
		deadline := time.Now().Add(2 * time.Second)
		for {
			var left []int
			for _, pid := range pids {
				if packtest.Alive(pid) {
					left = append(left, pid)
				}
			}
			if len(left) == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("pack processes %v still run 2s after the host was killed", left)
			}
			time.Sleep(50 * time.Millisecond)
		}
	})
}

// TestStatusWarnsOfAFeedThatHasNotVerifiedForLong configures a feed that
// last verified four days ago and one that never did: status warns of
// each, without changing its exit code, and changes nothing.
func TestStatusWarnsOfAFeedThatHasNotVerifiedForLong(t *testing.T) {
	root := system(t, "plugins/core")
	if r := host(t, "db", "upgrade", "--root", root); r.code != 0 {
		t.Fatalf("db upgrade: %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	url := "https://updates.example/feed.json"
	if err := os.WriteFile(filepath.Join(root, "host.json"), []byte(`{"feed": {"url": "`+url+`", "check_interval": "6h"}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	r := host(t, "status", "--root", root)
	if r.code != 0 || !strings.Contains(r.stdout, "Warning: the update feed "+url+" has never verified on this system") {
		t.Fatalf("status exited %d:\n%s", r.code, r.stdout)
	}
	old := time.Now().Add(-96 * time.Hour).UTC().Format(time.RFC3339)
	state := `{"feeds": {"ed25519:x": {"sequence": 3, "sha256": "00", "seen_at": "` + old + `", "url": "` + url + `", "verified_at": "` + old + `"}}}`
	if err := os.WriteFile(filepath.Join(root, "data", "feed_state.json"), []byte(state), 0o600); err != nil {
		t.Fatal(err)
	}
	before := tree(t, root)
	r = host(t, "status", "--root", root)
	if r.code != 0 || !strings.Contains(r.stdout, "Warning: the update feed "+url+" last verified") || !strings.Contains(r.stdout, "longer than 18h0m0s") {
		t.Fatalf("status exited %d:\n%s", r.code, r.stdout)
	}
	if after := tree(t, root); after != before {
		t.Errorf("status changed the system directory:\nbefore:\n%s\nafter:\n%s", before, after)
	}
}
