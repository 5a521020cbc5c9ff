package e2e

import (
	"archive/zip"
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
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

	"github.com/chromedp/chromedp"

	"github.com/packhost/packhost/host/manifest"
	"github.com/packhost/packhost/internal/packtest"
)

func TestMain(m *testing.M) { packtest.Main(m) }

// hostProcess is `host run` started as a real process.
type hostProcess struct {
	cmd    *exec.Cmd
	url    string
	token  chan string // receives the admin token when the host prints it
	mu     sync.Mutex
	stderr strings.Builder
	done   chan error
}

func freeAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// startHost runs the host binary on root with args and waits until it
// serves. The admin token is read from stdout when the host prints it.
func startHost(t *testing.T, root string, args ...string) *hostProcess {
	t.Helper()
	addr := freeAddr(t)
	cmd := exec.Command(packtest.Host(t), append([]string{"run", "--root", root, "--addr", addr}, args...)...)
	stdout, _ := cmd.StdoutPipe()
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	h := &hostProcess{cmd: cmd, url: "http://" + addr, done: make(chan error, 1), token: make(chan string, 1)}
	serving := make(chan struct{})
	var once sync.Once
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if _, tok, ok := strings.Cut(sc.Text(), "mode 0600): "); ok {
				select {
				case h.token <- strings.TrimSpace(tok):
				default:
				}
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

// adminToken is the token the host printed at its start. The host prints
// it to stdout before it logs "serving" to stderr, but the two pipes are
// read apart, so the token may be read a moment after serving was seen.
func (h *hostProcess) adminToken(t *testing.T) string {
	t.Helper()
	select {
	case tok := <-h.token:
		return tok
	case <-time.After(10 * time.Second):
		t.Fatalf("the host did not print the admin token:\n%s", h.log())
		return ""
	}
}

func (h *hostProcess) log() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.stderr.String()
}

// stop sends SIGTERM and returns the exit code.
func (h *hostProcess) stop(t *testing.T) int {
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

// writeUpdateZip writes a valid update zip for pack id into dir: pack.json
// with whats_new and db_changes, and a binary entry with its sha256.
func writeUpdateZip(t *testing.T, dir, id, version, whatsNew string) string {
	t.Helper()
	bin := []byte("#!/bin/sh\nexit 1\n")
	sum := sha256.Sum256(bin)
	m := &manifest.Manifest{
		ID: id, Version: version, Released: "2026-11-20", WhatsNew: whatsNew,
		DBChanges: []manifest.DBChange{{Table: "users", From: 3, To: 4, Summary: "adds users.locale"}},
		Binaries:  map[string]manifest.Binary{manifest.Platform(): {Path: "bin/" + id, SHA256: hex.EncodeToString(sum[:])}},
	}
	data, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, id+"-"+version+".zip")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	zw := zip.NewWriter(f)
	for _, e := range []struct {
		name string
		data []byte
	}{{"pack.json", data}, {"bin/" + id, bin}} {
		w, err := zw.Create(e.name)
		if err != nil {
			t.Fatal(err)
		}
		w.Write(e.data)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

// chromiumPath finds Debian's chromium. It does not install it: `make test`
// runs scripts/install-chromium.sh before these tests.
func chromiumPath(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatalf("chromium not found (%v); install it with scripts/install-chromium.sh (make test runs it)", err)
	}
	return p
}

func artifactsDir(t *testing.T) string {
	dir := filepath.Join(packtest.ModuleRoot(), "testdata", "artifacts", "web-e2e")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

func browser(t *testing.T) context.Context {
	t.Helper()
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromiumPath(t)),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-quic", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1200, 1000),
	}
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelC := chromedp.NewContext(actx)
	tctx, cancelT := context.WithTimeout(ctx, 2*time.Minute)
	t.Cleanup(func() { cancelT(); cancelC(); cancelA() })
	return tctx
}

func screenshot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(artifactsDir(t), name)
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot %s", path)
}

func TestEndToEndInChromium(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the host and a browser")
	}
	root := packtest.NewRoot(t)
	packtest.Install(t, root, packtest.Build(t, "plugins/core", nil))
	if err := os.MkdirAll(filepath.Join(root, "Updates_Pending"), 0o755); err != nil {
		t.Fatal(err)
	}
	writeUpdateZip(t, filepath.Join(root, "Updates_Pending"), "core", "1.1.0",
		"## Faster pages\n\nThe home page loads **twice as fast**.\n\n- sessions last longer\n- <script>document.title='pwned'</script>raw HTML is dropped\n")

	ctx := browser(t)

	t.Run("log in and see the status page with the core pack and the pending update", func(t *testing.T) {
		h := startHost(t, root, "--ignore-updates", "--update-db")
		token := h.adminToken(t)
		if err := chromedp.Do(ctx, chromedp.Navigate(h.url+"/admin/"), chromedp.WaitVisible(`#token`)); err != nil {
			t.Fatal(err)
		}
		loginText, err := chromedp.Run(ctx, chromedp.Text("main"))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(loginText, "The admin pages need the admin token") {
			t.Fatalf("login page says %q", loginText)
		}
		screenshot(t, ctx, "1-login.png")
		sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err = chromedp.Do(sctx, chromedp.SendKeys(`#token`, token), chromedp.Click(`main button[type=submit]`))
		if err == nil {
			// The form answers with a redirect to the status page.
			// (WaitVisible never returns on that page with this chromedp;
			// WaitReady does.)
			err = chromedp.Do(sctx, chromedp.WaitReady(`.whats-new`))
		}
		cancel()
		if err != nil {
			screenshot(t, ctx, "2-status-failed.png")
			t.Fatalf("%v\n%s", err, h.log())
		}
		// Read the page by script, in one evaluation that sees the status
		// page or nothing: right after the redirect, a node query may hold
		// an id of the login page's document ("No node with given id
		// found"), and a script may still run in that document.
		var main, whatsNewHTML string
		rctx, rcancel := context.WithTimeout(ctx, 30*time.Second)
		for main == "" {
			got, err := chromedp.Run(rctx, chromedp.Evaluate[[]string](`(() => {
				const w = document.querySelector(".whats-new");
				return w ? [document.querySelector("main").innerText, w.innerHTML] : null;
			})()`))
			switch {
			case len(got) == 2:
				main, whatsNewHTML = got[0], got[1]
			case rctx.Err() != nil:
				rcancel()
				t.Fatalf("the status page did not show: %v", err)
			default:
				time.Sleep(50 * time.Millisecond)
			}
		}
		rcancel()
		title, err := chromedp.Run(ctx, chromedp.Title())
		if err != nil {
			t.Fatal(err)
		}
		screenshot(t, ctx, "2-status.png")
		for _, want := range []string{"core", "1.0.0", "users", "core 1.0.0 → 1.1.0", "Faster pages", "twice as fast", "adds users.locale",
			"signature: unsigned (accepted: no trusted keys)"} {
			if !strings.Contains(main, want) {
				t.Errorf("status page lacks %q:\n%s", want, main)
			}
		}
		if !strings.Contains(whatsNewHTML, "<strong>twice as fast</strong>") || strings.Contains(whatsNewHTML, "<script") || title == "pwned" {
			t.Errorf("whats_new rendered as %q (title %q)", whatsNewHTML, title)
		}
		if code := h.stop(t); code != 0 {
			t.Fatalf("exit code %d after SIGTERM:\n%s", code, h.log())
		}
	})

	t.Run("the maintenance page answers / under --admin-only", func(t *testing.T) {
		h := startHost(t, root, "--ignore-updates", "--admin-only")
		resp, err := http.Get(h.url + "/")
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 503 || resp.Header.Get("Retry-After") == "" {
			t.Fatalf("GET /: %d %v", resp.StatusCode, resp.Header)
		}
		if err := chromedp.Do(ctx, chromedp.Navigate(h.url+"/")); err != nil {
			t.Fatal(err)
		}
		heading, err := chromedp.Run(ctx, chromedp.Text("h1"))
		if err != nil {
			t.Fatal(err)
		}
		if heading != "Down for maintenance" {
			t.Fatalf("heading %q", heading)
		}
		screenshot(t, ctx, "3-maintenance.png")
		if code := h.stop(t); code != 0 {
			t.Fatalf("exit code %d after SIGTERM:\n%s", code, h.log())
		}
	})
}

func TestSIGTERMLetsRequestsInFlightFinish(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the host")
	}
	root := packtest.NewRoot(t)
	packtest.Install(t, root, packtest.Build(t, "plugins/core", nil))
	packtest.Install(t, root, packtest.Build(t, "host/web/testdata/webpack", nil))
	h := startHost(t, root, "--update-db")
	type answer struct {
		code int
		body string
		err  error
	}
	got := make(chan answer, 1)
	go func() {
		resp, err := http.Get(h.url + "/web/slow?ms=3000")
		if err != nil {
			got <- answer{err: err}
			return
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		got <- answer{resp.StatusCode, string(b), err}
	}()
	// Wait until the request is in the pack, then ask the host to stop.
	addr := strings.TrimPrefix(h.url, "http://")
	time.Sleep(500 * time.Millisecond)
	if err := h.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	// New connections are refused while the slow request runs on.
	packtest.WaitFor(t, "the host to stop accepting connections", func() bool {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
		}
		return err != nil
	})
	select {
	case a := <-got:
		if a.err != nil || a.code != 200 || a.body != "slept 3000ms\n" {
			t.Fatalf("the request in flight got %d %q %v", a.code, a.body, a.err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the request in flight did not finish")
	}
	select {
	case <-h.done:
	case <-time.After(30 * time.Second):
		t.Fatalf("host did not exit:\n%s", h.log())
	}
	if code := h.cmd.ProcessState.ExitCode(); code != 0 {
		t.Fatalf("exit code %d:\n%s", code, h.log())
	}
	if !strings.Contains(h.log(), "stopping: no new connections") {
		t.Fatalf("log:\n%s", h.log())
	}
}
