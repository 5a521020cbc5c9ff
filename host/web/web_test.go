package web

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/packhost/packhost/host/system"
	"github.com/packhost/packhost/host/web/internal/demopages"
	"github.com/packhost/packhost/internal/packtest"
)

func TestMain(m *testing.M) { packtest.Main(m) }

// site is one system directory with the core pack and the web test pack
// installed and running, shared by the tests of this package (starting
// packs is the slow part). Tests that need their own token make their own.
var (
	siteOnce sync.Once
	siteSys  *system.System
	siteErr  error
)

func sharedSystem(t testing.TB) *system.System {
	t.Helper()
	siteOnce.Do(func() {
		root, err := os.MkdirTemp("", "webtest-")
		if err != nil {
			siteErr = err
			return
		}
		installPacks(t, root)
		siteSys, siteErr = system.Open(context.Background(), system.Options{Root: root})
	})
	if siteErr != nil {
		t.Fatal(siteErr)
	}
	return siteSys
}

func installPacks(t testing.TB, root string) {
	packtest.Install(t, root, packtest.Build(t, "plugins/core", nil))
	packtest.Install(t, root, packtest.Build(t, "host/web/testdata/webpack", nil))
}

// newServer makes a Server over sys and serves it on a loopback test
// server.
func newServer(t testing.TB, cfg Config) (*Server, *httptest.Server) {
	t.Helper()
	if cfg.System == nil {
		cfg.System = sharedSystem(t)
	}
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:0"
	}
	if cfg.Stdout == nil {
		cfg.Stdout = io.Discard
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	// The token file keeps only the hash: the tests remember the token
	// the first server of a system made (or make one they know).
	knownMu.Lock()
	switch {
	case s.token != "":
		known[cfg.System.Root] = s.token
	case known[cfg.System.Root] != "":
		s.token = known[cfg.System.Root]
	default:
		if s.token, _, err = NewToken(cfg.System.Root, false); err != nil {
			knownMu.Unlock()
			t.Fatal(err)
		}
		known[cfg.System.Root] = s.token
	}
	knownMu.Unlock()
	return s, serve(t, s, s.Handler())
}

// known are the admin tokens of the systems the tests made, by root.
var (
	knownMu sync.Mutex
	known   = map[string]string{}
)

// serve serves h on a loopback test server with the http.Server settings
// of the host's own listeners (read-header and idle timeouts).
func serve(t testing.TB, s *Server, h http.Handler) *httptest.Server {
	t.Helper()
	ts := httptest.NewUnstartedServer(h)
	srv := s.httpServer(h)
	ts.Config = srv
	ts.Start()
	t.Cleanup(ts.Close)
	return ts
}

func get(t *testing.T, c *http.Client, u string, hdr ...string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	if c == nil {
		c = noRedirect()
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(body)
}

func noRedirect() *http.Client {
	return &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

func TestPackPagesAreServedThroughTheirPacks(t *testing.T) {
	_, ts := newServer(t, Config{})

	t.Run("the core pack serves the home page at /", func(t *testing.T) {
		resp, body := get(t, nil, ts.URL+"/")
		if resp.StatusCode != 200 || !strings.Contains(body, "core pack 1.0.0") {
			t.Fatalf("GET /: %d %q", resp.StatusCode, body)
		}
	})
	t.Run("a pack answers under its prefix", func(t *testing.T) {
		resp, body := get(t, nil, ts.URL+"/web/hello")
		if resp.StatusCode != 200 || body != demopages.Hello || resp.Header.Get("Content-Type") != "text/plain; charset=utf-8" {
			t.Fatalf("GET /web/hello: %d %q %v", resp.StatusCode, body, resp.Header)
		}
	})
	t.Run("the prefix without its slash redirects", func(t *testing.T) {
		resp, _ := get(t, nil, ts.URL+"/web?x=1")
		if resp.StatusCode != http.StatusMovedPermanently || resp.Header.Get("Location") != "/web/?x=1" {
			t.Fatalf("GET /web: %d %v", resp.StatusCode, resp.Header)
		}
	})
	t.Run("an unknown path gets the core pack's 404", func(t *testing.T) {
		resp, _ := get(t, nil, ts.URL+"/no/such/page")
		if resp.StatusCode != http.StatusNotFound {
			t.Fatalf("GET /no/such/page: %d", resp.StatusCode)
		}
	})
	t.Run("method, path, query, headers and a large body reach the pack", func(t *testing.T) {
		body := make([]byte, 3<<20+17)
		if _, err := rand.Read(body); err != nil {
			t.Fatal(err)
		}
		req, _ := http.NewRequest(http.MethodPut, ts.URL+"/web/echo?a=1&b=%20x", bytes.NewReader(body))
		req.Header.Set("X-Test", "yes")
		req.Header.Set("Connection", "keep-alive")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var e demopages.Echo
		if err := json.NewDecoder(resp.Body).Decode(&e); err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(body)
		if resp.StatusCode != http.StatusCreated || resp.Header.Get("X-Pack") != "web" {
			t.Fatalf("status %d, headers %v", resp.StatusCode, resp.Header)
		}
		if e.Method != "PUT" || e.Path != "/web/echo" || e.Query != "a=1&b=%20x" || e.BodyLen != int64(len(body)) ||
			e.BodySHA256 != hex.EncodeToString(sum[:]) || e.Header["X-Test"][0] != "yes" || e.Header["Connection"] != nil ||
			!strings.HasPrefix(e.RemoteAddr, "127.0.0.1:") || e.Host != strings.TrimPrefix(ts.URL, "http://") {
			t.Fatalf("the pack saw %+v", e)
		}
	})
	t.Run("the admin token never reaches a pack, other credentials do", func(t *testing.T) {
		srv, _ := newServer(t, Config{})
		ts2 := httptest.NewServer(srv.Handler())
		defer ts2.Close()
		for _, c := range []struct {
			auth string
			seen bool
		}{{"Bearer " + srv.token, false}, {"Basic Z3Vlc3Q6cHc=", true}} {
			_, body := get(t, nil, ts2.URL+"/web/echo", "Authorization", c.auth)
			var e demopages.Echo
			if err := json.Unmarshal([]byte(body), &e); err != nil {
				t.Fatalf("%v: %s", err, body)
			}
			if got := e.Header["Authorization"] != nil; got != c.seen {
				t.Fatalf("Authorization %q: the pack saw it: %v, want %v", c.auth, got, c.seen)
			}
		}
	})
	t.Run("a streamed answer arrives whole and in order", func(t *testing.T) {
		resp, body := get(t, nil, ts.URL+"/web/stream?chunks=40&size=50000")
		if resp.StatusCode != 200 || len(body) != 40*50000 {
			t.Fatalf("status %d, %d bytes", resp.StatusCode, len(body))
		}
		for i := 0; i < 40; i++ {
			if body[i*50000] != byte('a'+i%26) || body[i*50000+49999] != byte('a'+i%26) {
				t.Fatalf("chunk %d is out of place", i)
			}
		}
	})
	t.Run("a handler that panics answers 500", func(t *testing.T) {
		resp, body := get(t, nil, ts.URL+"/web/panic")
		if resp.StatusCode != 500 || !strings.Contains(body, "internal error in pack web") {
			t.Fatalf("GET /web/panic: %d %q", resp.StatusCode, body)
		}
	})
}

func TestCancellingARequestReachesThePack(t *testing.T) {
	sys := sharedSystem(t)
	_, ts := newServer(t, Config{})
	ctx, cancel := context.WithCancel(context.Background())
	id := hex.EncodeToString([]byte(t.Name()))[:16]
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, ts.URL+"/web/wait?id="+id, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	line := make([]byte, len("waiting\n"))
	if _, err := io.ReadFull(resp.Body, line); err != nil || string(line) != "waiting\n" {
		t.Fatalf("first line %q, %v", line, err)
	}
	cancel()
	resp.Body.Close()
	mark := filepath.Join(filepath.Dir(sys.Pack("web").Binary), "cancelled-"+id)
	packtest.WaitFor(t, "the pack's request context to end", func() bool { _, err := os.Stat(mark); return err == nil })
	data, _ := os.ReadFile(mark)
	if string(data) != context.Canceled.Error() {
		t.Fatalf("the pack's request ended with %q, want %q", data, context.Canceled)
	}
}

func TestASlowPackAnswers504(t *testing.T) {
	_, ts := newServer(t, Config{HeadTimeout: 100 * time.Millisecond})
	resp, body := get(t, nil, ts.URL+"/web/slow?ms=60000")
	if resp.StatusCode != http.StatusGatewayTimeout || !strings.Contains(body, "did not answer within 100ms") {
		t.Fatalf("GET /web/slow: %d %q", resp.StatusCode, body)
	}
}

func TestMaintenanceServesOnlyAdmin(t *testing.T) {
	s, ts := newServer(t, Config{AdminOnly: true, Reason: "The database needs updates."})
	for _, p := range []string{"/", "/web/hello", "/anything?x=1"} {
		resp, body := get(t, nil, ts.URL+p)
		if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") != RetryAfter ||
			!strings.Contains(body, "Down for maintenance") || !strings.Contains(body, "The database needs updates.") {
			t.Fatalf("GET %s: %d %v %q", p, resp.StatusCode, resp.Header, body)
		}
	}
	resp, body := get(t, nil, ts.URL+"/admin/api/status", "Authorization", "Bearer "+s.token)
	if resp.StatusCode != 200 || !strings.Contains(body, `"packs"`) {
		t.Fatalf("admin API under maintenance: %d %q", resp.StatusCode, body)
	}
	resp, body = get(t, nil, ts.URL+"/admin/", "Authorization", "Bearer "+s.token)
	if resp.StatusCode != 200 || !strings.Contains(body, "only the admin pages are served") {
		t.Fatalf("admin page under maintenance: %d %q", resp.StatusCode, body)
	}
}

func TestAdminNeedsTheToken(t *testing.T) {
	s, ts := newServer(t, Config{})
	wrong := strings.Repeat("0", 64)
	cases := []struct {
		name, path string
		hdr        []string
	}{
		{"the API without a token", "/admin/api/status", nil},
		{"the API with a wrong token", "/admin/api/status", []string{"Authorization", "Bearer " + wrong}},
		{"the API with the token in another scheme", "/admin/api/status", []string{"Authorization", "Basic " + s.token}},
		{"a page without a token", "/admin/", nil},
		{"a page with a wrong cookie", "/admin/backups", []string{"Cookie", CookieName + "=" + wrong}},
		{"a page with the raw token as cookie", "/admin/history", []string{"Cookie", CookieName + "=" + s.token}},
	}
	for _, c := range cases {
		t.Run(c.name+" gets 401", func(t *testing.T) {
			resp, body := get(t, nil, ts.URL+c.path, c.hdr...)
			if resp.StatusCode != http.StatusUnauthorized {
				t.Fatalf("%d %q", resp.StatusCode, body)
			}
			if strings.HasPrefix(c.path, "/admin/api/") {
				if !strings.Contains(body, "missing or wrong admin token") || resp.Header.Get("WWW-Authenticate") == "" {
					t.Fatalf("API 401 body %q headers %v", body, resp.Header)
				}
			} else if !strings.Contains(body, `name="token"`) {
				t.Fatalf("page 401 has no login form: %q", body)
			}
		})
	}
	t.Run("the API with the token answers the status report", func(t *testing.T) {
		resp, body := get(t, nil, ts.URL+"/admin/api/status", "Authorization", "Bearer "+s.token)
		if resp.StatusCode != 200 {
			t.Fatalf("%d %q", resp.StatusCode, body)
		}
		want, err := s.cfg.Report(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		_ = want.WriteJSON(&buf)
		if body != buf.String() {
			t.Fatalf("API status differs from the report:\n%s\nwant\n%s", body, buf.String())
		}
	})
	t.Run("a wrong token at the login form gets 401 and no cookie", func(t *testing.T) {
		resp, err := noRedirect().PostForm(ts.URL+"/admin/login", url.Values{"token": {wrong}})
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 401 || len(resp.Cookies()) != 0 || !strings.Contains(string(body), "That is not the admin token") {
			t.Fatalf("%d %v %q", resp.StatusCode, resp.Cookies(), body)
		}
	})
	t.Run("a cross-site login post is refused", func(t *testing.T) {
		req, _ := http.NewRequest(http.MethodPost, ts.URL+"/admin/login", strings.NewReader(url.Values{"token": {s.token}}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Sec-Fetch-Site", "cross-site")
		resp, err := noRedirect().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden || len(resp.Cookies()) != 0 {
			t.Fatalf("%d %v", resp.StatusCode, resp.Cookies())
		}
	})
	t.Run("the login form sets an HttpOnly SameSite cookie that opens the pages", func(t *testing.T) {
		jar, _ := cookiejar.New(nil)
		c := &http.Client{Jar: jar}
		resp, err := c.PostForm(ts.URL+"/admin/login", url.Values{"token": {s.token}, "next": {"/admin/backups"}})
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || resp.Request.URL.Path != "/admin/backups" || !strings.Contains(string(body), "No backups yet") {
			t.Fatalf("after login: %d %s %q", resp.StatusCode, resp.Request.URL, body)
		}
		var cookie *http.Cookie
		for _, h := range resp.Request.Response.Header.Values("Set-Cookie") {
			ck, err := http.ParseSetCookie(h)
			if err == nil && ck.Name == CookieName {
				cookie = ck
			}
		}
		if cookie == nil || !cookie.HttpOnly || cookie.SameSite != http.SameSiteStrictMode || cookie.Path != "/admin" || cookie.Value == s.token {
			t.Fatalf("cookie %+v", cookie)
		}
		resp2, body2 := get(t, c, ts.URL+"/admin/")
		csrf := csrfField(t, body2)
		if resp2.StatusCode != 200 || !strings.Contains(body2, "<td rowspan=\"2\">core</td>") {
			t.Fatalf("status page: %d %q", resp2.StatusCode, body2)
		}
		// Logging out needs the form's CSRF field.
		resp3, err := c.PostForm(ts.URL+"/admin/logout", url.Values{})
		if err != nil {
			t.Fatal(err)
		}
		resp3.Body.Close()
		if resp3.StatusCode != http.StatusForbidden {
			t.Fatalf("logout without csrf: %d", resp3.StatusCode)
		}
		resp4, err := c.PostForm(ts.URL+"/admin/logout", url.Values{"csrf": {csrf}})
		if err != nil {
			t.Fatal(err)
		}
		resp4.Body.Close()
		if resp4.StatusCode != http.StatusUnauthorized || resp4.Request.URL.Path != "/admin/login" {
			t.Fatalf("after logout: %d %s", resp4.StatusCode, resp4.Request.URL)
		}
	})
}
