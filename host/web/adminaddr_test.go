package web

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/packhost/packhost/host/web/internal/demopages"
	"github.com/packhost/packhost/internal/packtest"
)

func TestTheAdminPagesOnTheirOwnAddress(t *testing.T) {
	s, main := newServer(t, Config{AdminAddr: "127.0.0.1:1"})
	admin := serve(t, s, s.AdminHandler())
	bearer := []string{"Authorization", "Bearer " + s.token}

	t.Run("the admin pages answer on the admin address", func(t *testing.T) {
		resp, body := get(t, nil, admin.URL+"/admin/api/status", bearer...)
		if resp.StatusCode != 200 || !strings.Contains(body, `"packs"`) {
			t.Fatalf("%d %q", resp.StatusCode, body)
		}
		if resp, _ := get(t, nil, admin.URL+"/"); resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/admin/" {
			t.Fatalf("GET / on the admin address: %d %v", resp.StatusCode, resp.Header)
		}
	})
	t.Run("pack pages do not answer on the admin address", func(t *testing.T) {
		for _, p := range []string{"/web/hello", "/web/echo", "/nothing-here"} {
			resp, body := get(t, nil, admin.URL+p)
			if resp.StatusCode != http.StatusNotFound || strings.Contains(body, demopages.Hello) || strings.Contains(body, `"method"`) {
				t.Fatalf("GET %s on the admin address: %d %q", p, resp.StatusCode, body)
			}
		}
	})
	t.Run("the main address serves no /admin, not even to a pack", func(t *testing.T) {
		for _, p := range []string{"/admin/", "/admin/api/status", "/admin/login", "/admin"} {
			resp, body := get(t, nil, main.URL+p, bearer...)
			if resp.StatusCode != http.StatusNotFound || strings.Contains(body, `"packs"`) || strings.Contains(body, "token") {
				t.Fatalf("GET %s on the main address: %d %q", p, resp.StatusCode, body)
			}
		}
	})
	t.Run("pack pages answer on the main address", func(t *testing.T) {
		resp, body := get(t, nil, main.URL+"/web/hello")
		if resp.StatusCode != 200 || body != demopages.Hello {
			t.Fatalf("%d %q", resp.StatusCode, body)
		}
	})
	t.Run("the admin address may not be the main one", func(t *testing.T) {
		_, err := New(Config{System: sharedSystem(t), Addr: "127.0.0.1:8080", AdminAddr: "127.0.0.1:8080", Stdout: io.Discard})
		if err == nil || !strings.Contains(err.Error(), "--admin-addr 127.0.0.1:8080 is the same as --addr") {
			t.Fatalf("error %v", err)
		}
	})
}

func TestTheTokenCheckFollowsTheAdminAddress(t *testing.T) {
	sys := sharedSystem(t)
	t.Run("a public main address with a loopback admin address makes the token", func(t *testing.T) {
		copySys := *sys
		copySys.Root = t.TempDir()
		var out strings.Builder
		s, err := New(Config{System: &copySys, Addr: "0.0.0.0:0", AdminAddr: "127.0.0.1:0", Stdout: &out})
		if err != nil {
			t.Fatal(err)
		}
		data, err := os.ReadFile(filepath.Join(copySys.Root, TokenFile))
		if err != nil || strings.TrimSpace(string(data)) != HashToken(s.token) || !strings.Contains(out.String(), s.token) {
			t.Fatalf("token file %q (%v), printed %q", data, err, out.String())
		}
	})
	t.Run("a public admin address before the token exists is refused, and nothing is made", func(t *testing.T) {
		root := t.TempDir()
		copySys := *sys
		copySys.Root = root
		_, err := New(Config{System: &copySys, Addr: "127.0.0.1:0", AdminAddr: "0.0.0.0:9090", Stdout: io.Discard})
		if err == nil || !strings.Contains(err.Error(), "refusing to serve on 0.0.0.0:9090, which is not a loopback address") {
			t.Fatalf("error %v", err)
		}
		if entries, _ := os.ReadDir(root); len(entries) != 0 {
			t.Fatalf("made %v", entries)
		}
	})
}

// hostRun is `host run` as a real process, for the tests that need its
// listeners.
type hostRun struct {
	cmd    *exec.Cmd
	done   chan error
	token  chan string
	mu     sync.Mutex
	stderr strings.Builder
}

func (h *hostRun) log() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.stderr.String()
}

func loopbackAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// runHost starts `host run` with args and waits (60 seconds at most) until
// it logs that it serves.
func runHost(t *testing.T, args ...string) *hostRun {
	t.Helper()
	cmd := exec.Command(packtest.Host(t), append([]string{"run"}, args...)...)
	stdout, _ := cmd.StdoutPipe()
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	h := &hostRun{cmd: cmd, done: make(chan error, 1), token: make(chan string, 1)}
	serving := make(chan struct{})
	var once sync.Once
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if _, tok, ok := strings.Cut(sc.Text(), "mode 0600): "); ok {
				h.token <- strings.TrimSpace(tok)
			}
		}
	}()
	go func() {
		defer wg.Done()
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			h.mu.Lock()
			h.stderr.WriteString(sc.Text() + "\n")
			h.mu.Unlock()
			if strings.Contains(sc.Text(), "serving: addr=") {
				once.Do(func() { close(serving) })
			}
		}
	}()
	go func() {
		wg.Wait()
		h.done <- cmd.Wait()
	}()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			<-h.done
		}
	})
	select {
	case <-serving:
	case err := <-h.done:
		t.Fatalf("host exited before serving: %v\n%s", err, h.log())
	case <-time.After(60 * time.Second):
		t.Fatalf("host did not start serving:\n%s", h.log())
	}
	return h
}

// stop sends SIGTERM and returns the exit code.
func (h *hostRun) stop(t *testing.T) int {
	t.Helper()
	if err := h.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-h.done:
	case <-time.After(60 * time.Second):
		t.Fatalf("host did not stop after SIGTERM:\n%s", h.log())
	}
	return h.cmd.ProcessState.ExitCode()
}

func TestHostRunWithAdminAddrServesTheAdminPagesOnlyThere(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the host")
	}
	root := packtest.NewRoot(t)
	installPacks(t, root)
	addr, adminAddr := loopbackAddr(t), loopbackAddr(t)
	h := runHost(t, "--root", root, "--update-db", "--addr", addr, "--admin-addr", adminAddr)
	var token string
	select {
	case token = <-h.token:
	case <-time.After(10 * time.Second):
		t.Fatalf("the host printed no admin token:\n%s", h.log())
	}
	if !strings.Contains(h.log(), "serving the admin pages on their own address; none on the main one: admin_addr=http://"+adminAddr+"/admin/") {
		t.Fatalf("log:\n%s", h.log())
	}
	ask := func(base, path string, withToken bool) (int, string) {
		req, _ := http.NewRequestWithContext(context.Background(), http.MethodGet, "http://"+base+path, nil)
		if withToken {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := noRedirect().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	cases := []struct {
		name, base, path string
		code             int
		has              string
	}{
		{"the admin API on the admin address", adminAddr, "/admin/api/status", 200, `"packs"`},
		{"the status page on the admin address", adminAddr, "/admin/", 200, "<td rowspan=\"2\">core</td>"},
		{"a pack page on the main address", addr, "/web/hello", 200, demopages.Hello},
		{"the home page on the main address", addr, "/", 200, `<a href="/web/">`},
		{"the admin API on the main address", addr, "/admin/api/status", 404, "No page lives at this address."},
		{"the status page on the main address", addr, "/admin/", 404, "No page lives at this address."},
		{"a pack page on the admin address", adminAddr, "/web/hello", 404, "No page lives at this address."},
	}
	for _, c := range cases {
		t.Run(c.name+" answers "+http.StatusText(c.code), func(t *testing.T) {
			code, body := ask(c.base, c.path, true)
			if code != c.code || !strings.Contains(body, c.has) {
				t.Fatalf("%d %q", code, body)
			}
		})
	}
	if code := h.stop(t); code != 0 {
		t.Fatalf("exit code %d after SIGTERM:\n%s", code, h.log())
	}
	// The token file is the one the host printed; nothing else was made
	// in the system directory by the listeners.
	data, err := os.ReadFile(filepath.Join(root, TokenFile))
	if err != nil || strings.TrimSpace(string(data)) != HashToken(token) {
		t.Fatalf("token file %q %v", data, err)
	}
}
