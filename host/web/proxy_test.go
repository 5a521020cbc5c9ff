package web

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/hashicorp/go-hclog"

	"github.com/packhost/packhost/host/packs"
	"github.com/packhost/packhost/host/system"
	"github.com/packhost/packhost/host/web/internal/demopages"
	"github.com/packhost/packhost/internal/dbconn"
	"github.com/packhost/packhost/internal/dbtest"
	"github.com/packhost/packhost/internal/packtest"
)

// logBuffer collects what a server logs, for tests that read the log.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func newLog() (*logBuffer, hclog.Logger) {
	b := &logBuffer{}
	return b, hclog.New(&hclog.LoggerOptions{Output: b, Level: hclog.Debug})
}

// eventually waits up to 20 seconds for ok.
func eventually(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func echoOf(t *testing.T, body string) demopages.Echo {
	t.Helper()
	var e demopages.Echo
	if err := json.Unmarshal([]byte(body), &e); err != nil {
		t.Fatalf("%v: %s", err, body)
	}
	return e
}

func TestThePackSeesWhoAsked(t *testing.T) {
	t.Run("X-Forwarded-For, -Host and -Proto come from the connection, not from the client", func(t *testing.T) {
		_, ts := newServer(t, Config{})
		host := strings.TrimPrefix(ts.URL, "http://")
		_, body := get(t, nil, ts.URL+"/web/echo", "X-Forwarded-For", "6.6.6.6", "X-Forwarded-Proto", "https",
			"X-Forwarded-Host", "evil.example", "X-Packhost-Remote-Addr", "6.6.6.6:1")
		e := echoOf(t, body)
		if got := e.Header["X-Forwarded-For"]; len(got) != 1 || got[0] != "127.0.0.1" {
			t.Errorf("X-Forwarded-For %q, want [127.0.0.1]", got)
		}
		if got := e.Header["X-Forwarded-Proto"]; len(got) != 1 || got[0] != "http" {
			t.Errorf("X-Forwarded-Proto %q, want [http]", got)
		}
		if got := e.Header["X-Forwarded-Host"]; len(got) != 1 || got[0] != host {
			t.Errorf("X-Forwarded-Host %q, want [%s]", got, host)
		}
		if !strings.HasPrefix(e.RemoteAddr, "127.0.0.1:") || e.Header["X-Packhost-Remote-Addr"] != nil {
			t.Errorf("the pack saw RemoteAddr %q and headers %v", e.RemoteAddr, e.Header)
		}
	})
	t.Run("a trusted proxy's X-Forwarded-For, -Host and -Proto are passed on", func(t *testing.T) {
		_, ts := newServer(t, Config{Web: &Settings{TrustedProxies: []string{"127.0.0.0/8"}}})
		_, body := get(t, nil, ts.URL+"/web/echo", "X-Forwarded-For", "203.0.113.7", "X-Forwarded-Proto", "https",
			"X-Forwarded-Host", "www.example.org")
		e := echoOf(t, body)
		if got := e.Header["X-Forwarded-For"]; len(got) != 1 || got[0] != "203.0.113.7, 127.0.0.1" {
			t.Errorf("X-Forwarded-For %q, want [203.0.113.7, 127.0.0.1]", got)
		}
		if got := e.Header["X-Forwarded-Proto"]; len(got) != 1 || got[0] != "https" {
			t.Errorf("X-Forwarded-Proto %q, want [https]", got)
		}
		if got := e.Header["X-Forwarded-Host"]; len(got) != 1 || got[0] != "www.example.org" {
			t.Errorf("X-Forwarded-Host %q, want [www.example.org]", got)
		}
	})
}

func TestTheAdminCookieNeverReachesAPack(t *testing.T) {
	_, ts := newServer(t, Config{})
	for _, cookie := range []string{
		CookieName + "=secret-session; theme=dark",
		"theme=dark; " + CookieName + "=secret-session",
		"theme=dark;" + strings.ToUpper(CookieName) + "=secret-session",
	} {
		t.Run(cookie, func(t *testing.T) {
			_, body := get(t, nil, ts.URL+"/web/echo", "Cookie", cookie)
			e := echoOf(t, body)
			if got := e.Header["Cookie"]; len(got) != 1 || got[0] != "theme=dark" {
				t.Fatalf("the pack saw Cookie %q, want [theme=dark]", got)
			}
		})
	}
	t.Run("a request with only the admin cookie reaches the pack with none", func(t *testing.T) {
		_, body := get(t, nil, ts.URL+"/web/echo", "Cookie", CookieName+"=secret-session")
		if e := echoOf(t, body); e.Header["Cookie"] != nil {
			t.Fatalf("the pack saw Cookie %q", e.Header["Cookie"])
		}
	})
}

func TestAPackCannotPlantTheAdminCookie(t *testing.T) {
	logs, logger := newLog()
	_, ts := newServer(t, Config{Logger: logger})
	planted := []string{
		CookieName + "=planted; Path=/admin; HttpOnly",
		CookieName + "=; Path=/admin; Max-Age=0", // clearing it logs the admin out
		"PackHost_Admin=planted; Path=/admin",
		" " + CookieName + " =planted; Path=/admin",
		CookieName + "(unreadable)=planted; Path=/admin",
	}
	q := "?set=" + strings.Join(func() []string {
		var out []string
		for _, c := range append(planted, "theme=dark; Path=/web/") {
			out = append(out, url.QueryEscape(c))
		}
		return out
	}(), "&set=")
	resp, body := get(t, nil, ts.URL+"/web/cookies"+q)
	if resp.StatusCode != 200 || body != "cookies set\n" {
		t.Fatalf("GET /web/cookies: %d %q", resp.StatusCode, body)
	}
	if got := resp.Header.Values("Set-Cookie"); len(got) != 1 || got[0] != "theme=dark; Path=/web/" {
		t.Fatalf("Set-Cookie reaching the browser: %q, want only the pack's own cookie", got)
	}
	if !strings.Contains(logs.String(), "a pack's answer tried to set the admin cookie; the header was dropped: pack=web path=/web/cookies headers=5") {
		t.Fatalf("log:\n%s", logs)
	}
}

func TestTrailersPassThrough(t *testing.T) {
	_, ts := newServer(t, Config{})
	resp, err := http.Get(ts.URL + "/web/trailers")
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(body)
	if string(body) != demopages.TrailerBody || resp.Trailer.Get("X-Sum") != hex.EncodeToString(sum[:]) ||
		resp.Trailer.Get("X-Count") != strconv.Itoa(len(demopages.TrailerBody)) {
		t.Fatalf("body %q, trailers %v", body, resp.Trailer)
	}
}

func TestAWebSocketEchoesThroughTheHost(t *testing.T) {
	_, ts := newServer(t, Config{PageTimeout: 300 * time.Millisecond})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, resp, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(ts.URL, "http")+"/web/ws", nil)
	if err != nil {
		t.Fatalf("dial: %v (%v)", err, resp)
	}
	defer c.CloseNow()
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("status %d", resp.StatusCode)
	}
	big := bytes.Repeat([]byte("0123456789"), 3000)
	for i, msg := range [][]byte{[]byte("hello"), big, []byte("after the page timeout")} {
		if i == 2 {
			// A WebSocket is not a page: it outlives the page timeout.
			time.Sleep(600 * time.Millisecond)
		}
		if err := c.Write(ctx, websocket.MessageBinary, msg); err != nil {
			t.Fatalf("message %d: write: %v", i, err)
		}
		typ, got, err := c.Read(ctx)
		if err != nil || typ != websocket.MessageBinary || !bytes.Equal(got, msg) {
			t.Fatalf("message %d: read %v %d bytes, %v", i, typ, len(got), err)
		}
	}
	if err := c.Close(websocket.StatusNormalClosure, "done"); err != nil {
		t.Fatalf("close: %v", err)
	}
}

func TestAPageReachesThePacksDatabaseThroughItsRequest(t *testing.T) {
	dbtest.ForEach(t, func(t *testing.T, db dbtest.DB) {
		root := packtest.NewRoot(t)
		installPacks(t, root)
		flag := db.Target.DSN
		if db.Target.Driver == dbconn.SQLite {
			flag = "sqlite:" + db.Target.DSN
		}
		sys, err := system.Open(context.Background(), system.Options{Root: root, DBFlag: flag})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(sys.Close)
		_, ts := newServer(t, Config{System: sys})
		resp, body := get(t, nil, ts.URL+"/web/db")
		if resp.StatusCode != 200 || body != "the database says 2\n" {
			t.Fatalf("GET /web/db: %d %q", resp.StatusCode, body)
		}
	})
}

func TestAHandlerThatPanicsAfterItsAnswerStartedBreaksTheConnection(t *testing.T) {
	_, ts := newServer(t, Config{})
	resp, err := http.Get(ts.URL + "/web/panic-late")
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || err == nil || !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("status %d, body %q, error %v: want the body cut off with an error", resp.StatusCode, body, err)
	}
}

func TestThePacksBehindThePrefixesCanBeSwappedWhileServing(t *testing.T) {
	sys := sharedSystem(t)
	s, ts := newServer(t, Config{})
	var onlyCore []*packs.Pack
	for _, p := range sys.Packs {
		if p.ID == "core" {
			onlyCore = append(onlyCore, p)
		}
	}
	if problems := s.ServePacks(onlyCore); len(problems) != 0 {
		t.Fatal(problems)
	}
	resp, _ := get(t, nil, ts.URL+"/web/hello")
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("GET /web/hello without the web pack: %d, want core's 404", resp.StatusCode)
	}
	s.ServePacks(sys.Packs)
	resp, body := get(t, nil, ts.URL+"/web/hello")
	if resp.StatusCode != 200 || body != demopages.Hello {
		t.Fatalf("GET /web/hello with the web pack back: %d %q", resp.StatusCode, body)
	}
}

func TestTheHomePageListsThePacksPages(t *testing.T) {
	t.Run("with the admin pages on the same address", func(t *testing.T) {
		_, ts := newServer(t, Config{})
		resp, body := get(t, nil, ts.URL+"/")
		for _, want := range []string{`<a href="/web/">/web/</a>`, "web 1.0.0", "Pages for the host&#39;s web tests.",
			`<a href="/admin/">Administration</a>`, "This host is running the core pack 1.0.0."} {
			if !strings.Contains(body, want) {
				t.Errorf("the home page lacks %q", want)
			}
		}
		if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/html; charset=utf-8" || strings.Contains(body, `href="/"`) {
			t.Fatalf("GET /: %d %v\n%s", resp.StatusCode, resp.Header, body)
		}
	})
	t.Run("with the admin pages elsewhere, it does not link them", func(t *testing.T) {
		_, ts := newServer(t, Config{AdminAddr: "127.0.0.1:1"})
		resp, body := get(t, nil, ts.URL+"/")
		if resp.StatusCode != 200 || !strings.Contains(body, `<a href="/web/">`) || strings.Contains(body, "/admin/") {
			t.Fatalf("GET /: %d\n%s", resp.StatusCode, body)
		}
	})
	t.Run("other paths of the core pack's prefix get its 404", func(t *testing.T) {
		_, ts := newServer(t, Config{})
		resp, body := get(t, nil, ts.URL+"/nothing-here")
		if resp.StatusCode != http.StatusNotFound || !strings.Contains(body, "No page lives at this address") {
			t.Fatalf("GET /nothing-here: %d %q", resp.StatusCode, body)
		}
	})
}

func TestPackFailuresAreReportedUnderThePacksName(t *testing.T) {
	root := packtest.NewRoot(t)
	installPacks(t, root)
	sysLogs, sysLogger := newLog()
	sys, err := system.Open(context.Background(), system.Options{Root: root, Logger: sysLogger})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sys.Close)
	logs, logger := newLog()
	s, ts := newServer(t, Config{System: sys, Logger: logger})

	t.Run("a handler's panic is logged by the host under the pack's name", func(t *testing.T) {
		if resp, _ := get(t, nil, ts.URL+"/web/panic"); resp.StatusCode != http.StatusInternalServerError {
			t.Fatalf("%d", resp.StatusCode)
		}
		defer func() {
			if t.Failed() {
				t.Logf("system log:\n%s", sysLogs)
			}
		}()
		eventually(t, "the pack's log line", func() bool {
			for _, line := range strings.Split(sysLogs.String(), "\n") {
				// The pack's own fields come back in any order.
				found := strings.Contains(line, "[ERROR] web.")
				for _, want := range []string{"page handler panicked:", "@module=web", "path=/web/panic", "method=GET", `panic="the test pack panics on purpose"`} {
					found = found && strings.Contains(line, want)
				}
				if found {
					return true
				}
			}
			return false
		})
	})
	t.Run("a pack that does not listen on its pages socket answers 502", func(t *testing.T) {
		// What a pack built with an older SDK (pages over gRPC) looks
		// like: nothing listens at its socket.
		sock := sys.Pack("web").PagesSocket()
		if err := os.Remove(sock); err != nil {
			t.Fatal(err)
		}
		for _, rt := range s.proxy.table.Load().routes {
			if rt.tr != nil {
				rt.tr.CloseIdleConnections() // as a pack that never listened has none
			}
		}
		resp, body := get(t, nil, ts.URL+"/web/hello")
		if resp.StatusCode != http.StatusBadGateway || !strings.Contains(body, "The pack web could not answer; the host&#39;s log says why.") ||
			strings.Contains(body, sock) {
			t.Fatalf("%d %q", resp.StatusCode, body)
		}
		if want := "it does not listen on its pages socket " + sock + " (a pack built with an SDK older than this host's serves its pages over gRPC, not there: rebuild it; it reports SDK "; !strings.Contains(logs.String(), want) {
			t.Fatalf("log lacks %q:\n%s", want, logs)
		}
		if resp, _ := get(t, nil, ts.URL+"/"); resp.StatusCode != 200 {
			t.Fatalf("the home page: %d", resp.StatusCode)
		}
	})
}
