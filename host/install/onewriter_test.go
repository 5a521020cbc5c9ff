package install

import (
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/packhost/packhost/internal/dbconn"
	"github.com/packhost/packhost/internal/dbtest"
	"github.com/packhost/packhost/internal/packtest"
	"github.com/packhost/packhost/internal/tablestate"
	"github.com/packhost/packhost/internal/ziptest"
)

// serve starts `host run` on the system and returns it serving.
func (s sys) serve(args ...string) *packtest.Serving {
	s.t.Helper()
	return packtest.StartHost(s.t, append([]string{"--root", s.root, "--db", s.db}, args...)...)
}

// writer posts a note every interval to the host at url until stopped,
// and counts the notes the host acknowledged (answered 200 with an id).
type writer struct {
	url   string
	stop  chan struct{}
	done  chan struct{}
	mu    sync.Mutex
	acked []int64
	errs  int
}

func startWriter(base string, every time.Duration) *writer {
	w := &writer{url: base, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		c := &http.Client{Timeout: 5 * time.Second}
		for i := 0; ; i++ {
			select {
			case <-w.stop:
				return
			case <-time.After(every):
			}
			resp, err := c.PostForm(w.url+"/notes/add", url.Values{"body": {fmt.Sprint("note ", i)}})
			if err != nil {
				w.mu.Lock()
				w.errs++
				w.mu.Unlock()
				continue
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			id, perr := strconv.ParseInt(strings.TrimSpace(string(body)), 10, 64)
			w.mu.Lock()
			if resp.StatusCode == http.StatusOK && perr == nil {
				w.acked = append(w.acked, id)
			} else {
				w.errs++
			}
			w.mu.Unlock()
		}
	}()
	return w
}

func (w *writer) finish() []int64 {
	close(w.stop)
	<-w.done
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]int64(nil), w.acked...)
}

// noteIDs are the ids in the notes table.
func noteIDs(t *testing.T, target dbconn.Target) map[int64]bool {
	t.Helper()
	db, err := dbconn.Open(target)
	if err != nil {
		t.Fatal(err)
	}
	defer dbconn.Close(db)
	var ids []int64
	if err := db.Raw(`SELECT id FROM notes`).Scan(&ids).Error; err != nil {
		t.Fatal(err)
	}
	out := map[int64]bool{}
	for _, id := range ids {
		out[id] = true
	}
	return out
}

var holderPID = regexp.MustCompile(`\(pid (\d+)`)

// TestAServingHostKeepsInstallsAwayAndLosesNoWrite serves a system while
// a client writes through a pack page, then tries to install a release
// whose step fails beside it: the install is refused, naming the serving
// host, nothing changes, and every write the host acknowledged is there
// once it stops. A second host on the same system is refused at once, and
// on PostgreSQL an install from another system on the same database is
// refused by the database lock.
func TestAServingHostKeepsInstallsAwayAndLosesNoWrite(t *testing.T) {
	dbtest.ForEach(t, func(t *testing.T, db dbtest.DB) {
		s := newSystem(t, dbFlag(db))
		a := s.serve()
		w := startWriter(a.URL, 50*time.Millisecond)
		packtest.WaitFor(t, "the first acknowledged write", func() bool {
			w.mu.Lock()
			defer w.mu.Unlock()
			return len(w.acked) > 3
		})
		bad := buildZip(t, s.host, packtest.Build(t, "testdata/packs/notes", map[string]string{"release": "3", "failAt": "3"}))
		before := ziptest.Snapshot(t, filepath.Join(s.root, "packs"))

		t.Run("an install beside it is refused", func(t *testing.T) {
			code, out := s.install(nil, []string{"--lock-wait", "1s"}, bad)
			if code != 1 || !strings.Contains(out, "holds the system lock") || !strings.Contains(out, "host run (pid "+strconv.Itoa(a.Cmd.Process.Pid)) ||
				!strings.Contains(out, "stop the host first") {
				t.Fatalf("exit %d, want 1 naming the serving host:\n%s", code, out)
			}
			ziptest.AssertSame(t, before, ziptest.Snapshot(t, filepath.Join(s.root, "packs")))
		})
		t.Run("a second host on the system is refused at once", func(t *testing.T) {
			start := time.Now()
			code, out := s.exec(nil, "run", "--root", s.root, "--db", s.db, "--addr", "127.0.0.1:0")
			if code != 1 || !strings.Contains(out, "serves this system directory") || holderPID.FindStringSubmatch(out) == nil ||
				holderPID.FindStringSubmatch(out)[1] != strconv.Itoa(a.Cmd.Process.Pid) {
				t.Fatalf("exit %d, want 1 naming the first host's pid %d:\n%s", code, a.Cmd.Process.Pid, out)
			}
			if time.Since(start) > 10*time.Second {
				t.Errorf("the second host took %s to give up; it should not wait", time.Since(start))
			}
		})
		t.Run("a hot backup beside it works", func(t *testing.T) {
			if code, out := s.exec(nil, "db", "backup", "--root", s.root, "--db", s.db, "--pack", "notes"); code != 0 {
				t.Fatalf("db backup beside a serving host: exit %d\n%s", code, out)
			}
		})
		if db.Name == "postgres" {
			t.Run("an install from another system on the database is refused", func(t *testing.T) {
				other := sys{t: t, host: s.host, root: t.TempDir(), db: s.db}
				if err := os.CopyFS(other.root, os.DirFS(s.root)); err != nil {
					t.Fatal(err)
				}
				for _, d := range []string{"data/locks"} {
					os.RemoveAll(filepath.Join(other.root, d))
				}
				code, out := other.install(nil, []string{"--lock-wait", "1s", "--no-backup"}, bad)
				if code != 1 || !strings.Contains(out, "the database lock") || !strings.Contains(out, "packhost host run pid "+strconv.Itoa(a.Cmd.Process.Pid)) {
					t.Fatalf("exit %d, want 1 naming the serving host's session:\n%s", code, out)
				}
			})
		}
		acked := w.finish()
		if code := a.Stop(t); code != 0 {
			t.Fatalf("host run exited %d:\n%s", code, a.Log())
		}
		have := noteIDs(t, s.target())
		for _, id := range acked {
			if !have[id] {
				t.Errorf("note %d was acknowledged but is gone", id)
			}
		}
		if len(acked) < 4 {
			t.Fatalf("only %d writes were acknowledged: the test proves little", len(acked))
		}
		s.wantNotes("1.2.0", 2)
		s.wantClean()
	})
}

// TestACommandBesideALiveInstallWaitsAndChangesNothing holds an install in
// the middle of its upgrade (its step waits until the host is stopped),
// and runs beside it what an operator would: another install, a database
// backup, `host run`, `host status`. None of them touches the install; the
// writers wait, then give up naming it; status says an install is under
// way and changes nothing. Then the install is stopped and rolls back.
func TestACommandBesideALiveInstallWaitsAndChangesNothing(t *testing.T) {
	dbtest.ForEach(t, func(t *testing.T, db dbtest.DB) {
		s := newSystem(t, dbFlag(db))
		hang := buildZip(t, s.host, packtest.Build(t, "testdata/packs/notes", map[string]string{"release": "3", "hangAt": "3"}))
		cmd := exec.Command(s.host, "pack", "install", "--root", s.root, "--db", s.db, hang)
		var buf strings.Builder
		var mu sync.Mutex
		cmd.Stdout, cmd.Stderr = lockedBuilder{&buf, &mu}, lockedBuilder{&buf, &mu}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		packtest.WaitFor(t, "the install's step to notes 3", func() bool {
			logs, _ := filepath.Glob(filepath.Join(s.root, "packs", "*", "bin", "steps.log"))
			for _, l := range logs {
				if data, _ := os.ReadFile(l); strings.Contains(string(data), "notes 3\n") {
					return true
				}
			}
			return false
		})
		journal, _ := os.ReadFile(filepath.Join(s.root, ".install-journal.json"))
		pid := strconv.Itoa(cmd.Process.Pid)
		for _, c := range [][]string{
			{"db", "backup", "--root", s.root, "--db", s.db, "--lock-wait", "500ms"},
			{"run", "--root", s.root, "--db", s.db, "--addr", "127.0.0.1:0", "--lock-wait", "500ms"},
			{"pack", "install", "--root", s.root, "--db", s.db, "--lock-wait", "500ms", hang},
			{"db", "repair", "--root", s.root, "--db", s.db, "--lock-wait", "500ms"},
		} {
			code, out := s.exec(nil, c...)
			if code != 1 || !strings.Contains(out, "host pack install (pid "+pid) {
				t.Errorf("host %s beside the install: exit %d, want 1 naming the install (pid %s):\n%s", c[0]+" "+c[1], code, pid, out)
			}
		}
		before := ziptest.Snapshot(t, s.root)
		r := s.status()
		if !strings.Contains(strings.Join(r.Problems, "\n"), "is under way") {
			t.Errorf("status does not say an install is under way: %v", r.Problems)
		}
		ziptest.AssertSame(t, before, ziptest.Snapshot(t, s.root))
		if now, _ := os.ReadFile(filepath.Join(s.root, ".install-journal.json")); string(now) != string(journal) {
			t.Errorf("the journal changed under the install")
		}
		if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		select {
		case <-done:
		case <-time.After(time.Minute):
			t.Fatal("the install did not end after SIGTERM")
		}
		mu.Lock()
		out := buf.String()
		mu.Unlock()
		if cmd.ProcessState.ExitCode() != 1 || !strings.Contains(out, "the old versions were put back") {
			t.Fatalf("the stopped install exited %d:\n%s", cmd.ProcessState.ExitCode(), out)
		}
		s.wantNotes("1.2.0", 2)
		s.wantClean()
	})
}

type lockedBuilder struct {
	b  *strings.Builder
	mu *sync.Mutex
}

func (l lockedBuilder) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// TestAPackThatNeverAnswersIsLeftOut installs a pack whose schema check
// never returns: status and run each finish within the deadline, name it
// as not answering, and run serves the rest, admin pages included.
func TestAPackThatNeverAnswersIsLeftOut(t *testing.T) {
	dbtest.ForEach(t, func(t *testing.T, db dbtest.DB) {
		s := newSystem(t, dbFlag(db))
		stall := buildZip(t, s.host, packtest.Build(t, "testdata/packs/stall", nil))
		// Its tables are made as any pack's; only its check stalls.
		if code, out := s.install(nil, []string{"--no-backup"}, stall); code != 0 {
			t.Fatalf("install stall: exit %d\n%s", code, out)
		}
		start := time.Now()
		code, out := s.exec(nil, "status", "--root", s.root, "--db", s.db, "--rpc-timeout", "2s")
		if took := time.Since(start); took > 20*time.Second {
			t.Errorf("status took %s with a 2s deadline", took)
		}
		if code != 1 || !strings.Contains(out, "pack stall: check schema") || !strings.Contains(out, "the pack is not answering within 2s") {
			t.Fatalf("status: exit %d, want 1 naming stall as not answering:\n%s", code, out)
		}
		h := s.serve("--rpc-timeout", "2s")
		if !h.Contains("the pack is not answering") {
			t.Errorf("the host does not say stall is not answering:\n%s", h.Log())
		}
		resp, err := http.Get(h.URL + "/admin/login")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(string(body), "admin token") {
			t.Fatalf("admin login page beside a pack that does not answer: %d\n%s", resp.StatusCode, body)
		}
		if code := h.Stop(t); code != 0 {
			t.Errorf("host run exited %d:\n%s", code, h.Log())
		}
	})
}

// TestAnInstallUpgradesThePacksItDependsOnFirst installs, on a database
// where core's tables were never made, a notes release whose table
// references core's users: core's tables are made first, then notes'.
func TestAnInstallUpgradesThePacksItDependsOnFirst(t *testing.T) {
	dbtest.ForEach(t, func(t *testing.T, db dbtest.DB) {
		s := sys{t: t, host: packtest.Host(t), root: t.TempDir(), db: dbFlag(db)}
		packtest.Install(t, s.root, packtest.Build(t, "plugins/core", nil)) // installed, its tables never made
		notes := buildZip(t, s.host, packtest.Build(t, "testdata/packs/notes", map[string]string{"release": "3", "fk": "1"}))
		if err := os.MkdirAll(filepath.Join(s.root, "Updates_Pending"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := copyFile(notes, filepath.Join(s.root, "Updates_Pending", filepath.Base(notes))); err != nil {
			t.Fatal(err)
		}
		h := s.serve("--install-updates", "--update-db")
		if code := h.Stop(t); code != 0 {
			t.Fatalf("host run --install-updates --update-db exited %d:\n%s", code, h.Log())
		}
		for _, p := range s.status().Packs {
			for _, tb := range p.Tables {
				if tb.State != tablestate.OK {
					t.Errorf("%s.%s is %s after the install", p.ID, tb.Name, tb.State)
				}
			}
		}
		s.wantNotes("1.3.0", 3)
	})
}

// TestPackInstallInstallsOnlyTheZipsItIsGiven installs notes 1.3.0 with
// `host pack install ZIP` while a zip of another pack waits in
// Updates_Pending: only notes is installed, the other zip stays pending.
func TestPackInstallInstallsOnlyTheZipsItIsGiven(t *testing.T) {
	dbtest.ForEach(t, func(t *testing.T, db dbtest.DB) {
		s := newSystem(t, dbFlag(db))
		memo := buildZip(t, s.host, packtest.Build(t, "testdata/packs/notes", map[string]string{"id": "memo", "release": "2"}))
		if err := copyFile(memo, filepath.Join(s.root, "Updates_Pending", filepath.Base(memo))); err != nil {
			t.Fatal(err)
		}
		notes3 := buildZip(t, s.host, packtest.Build(t, "testdata/packs/notes", map[string]string{"release": "3"}))
		code, out := s.install(nil, nil, notes3)
		if code != 0 || strings.Contains(out, "installed memo") {
			t.Fatalf("pack install notes: exit %d\n%s", code, out)
		}
		s.wantNotes("1.3.0", 3)
		if _, err := os.Stat(filepath.Join(s.root, "packs", "memo")); err == nil {
			t.Error("memo was installed too")
		}
		if p := pendingNames(t, s.root, "Updates_Pending"); len(p) != 1 || p[0] != filepath.Base(memo) {
			t.Errorf("pending: %v, want only %s", p, filepath.Base(memo))
		}
	})
}
