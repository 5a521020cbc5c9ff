package web

import (
	"bufio"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/packhost/packhost/host/feed"
	"github.com/packhost/packhost/host/system"
	"github.com/packhost/packhost/internal/packtest"
)

// rawConn is a client that writes the bytes of a request itself, so it can
// be as slow or as large as a test needs.
type rawConn struct {
	net.Conn
	r *bufio.Reader
}

func dialRaw(t *testing.T, ts *httptest.Server) *rawConn {
	t.Helper()
	c, err := net.Dial("tcp", strings.TrimPrefix(ts.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &rawConn{Conn: c, r: bufio.NewReader(c)}
}

// response reads one response, giving up after 30 seconds.
func (c *rawConn) response(t *testing.T) (*http.Response, string) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
	resp, err := http.ReadResponse(c.r, nil)
	if err != nil {
		t.Fatalf("read response: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	return resp, string(body)
}

// closedByHost waits up to 30 seconds for the host to close the
// connection, reading and dropping what arrives.
func (c *rawConn) closedByHost(t *testing.T) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
	_, err := io.Copy(io.Discard, c.r)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatal("the host kept the connection open")
	}
}

// trickle sends one byte every 50 ms until stop is closed or a write fails.
func (c *rawConn) trickle(stop <-chan struct{}) {
	go func() {
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				if _, err := c.Write([]byte("x")); err != nil {
					return
				}
			}
		}
	}()
}

func markPath(t *testing.T, name string) string {
	return filepath.Join(filepath.Dir(sharedSystem(t).Pack("web").Binary), name)
}

func uniqueID(t *testing.T) string {
	return hex.EncodeToString([]byte(t.Name()))[:24] + fmt.Sprint(time.Now().UnixNano()%1e6)
}

// readMark waits for the web pack's /web/upload to leave its mark.
func readMark(t *testing.T, id string) string {
	t.Helper()
	path := markPath(t, "upload-"+id)
	eventually(t, "the pack's upload handler to end", func() bool { _, err := os.Stat(path); return err == nil })
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

func TestASlowClientHoldsNeitherAConnectionNorAPack(t *testing.T) {
	t.Run("a pack that times out answers 504 while the client still sends its body", func(t *testing.T) {
		// The read timeout is longer than the waits below: the answer and
		// the close must not wait for it.
		_, ts := newServer(t, Config{HeadTimeout: 300 * time.Millisecond, Web: &Settings{ReadTimeout: feedDuration(time.Minute)}})
		c := dialRaw(t, ts)
		id := uniqueID(t)
		fmt.Fprintf(c, "POST /web/upload?id=%s HTTP/1.1\r\nHost: test\r\nContent-Length: 100000\r\n\r\nfirst bytes", id)
		stop := make(chan struct{})
		defer close(stop)
		c.trickle(stop)
		resp, body := c.response(t)
		if resp.StatusCode != http.StatusGatewayTimeout || !strings.Contains(body, "The pack web did not answer within 300ms.") {
			t.Fatalf("%d %q", resp.StatusCode, body)
		}
		// The client goes on trickling; the host closes the connection,
		// and the pack's handler has ended.
		c.closedByHost(t)
		if got := readMark(t, id); !strings.HasPrefix(got, "failed after ") || !strings.HasSuffix(got, "unexpected EOF") {
			t.Fatalf("the pack's upload ended with %q", got)
		}
	})
	t.Run("a body slower than the read timeout answers 408 and ends the pack's request", func(t *testing.T) {
		_, ts := newServer(t, Config{Web: &Settings{ReadTimeout: feedDuration(500 * time.Millisecond)}})
		c := dialRaw(t, ts)
		id := uniqueID(t)
		fmt.Fprintf(c, "POST /web/upload?id=%s HTTP/1.1\r\nHost: test\r\nContent-Length: 100000\r\n\r\nfirst bytes", id)
		stop := make(chan struct{})
		defer close(stop)
		c.trickle(stop)
		resp, body := c.response(t)
		if resp.StatusCode != http.StatusRequestTimeout || !strings.Contains(body, "The request&#39;s body did not arrive within 500ms.") ||
			!resp.Close {
			t.Fatalf("%d %v %q", resp.StatusCode, resp.Header, body)
		}
		c.closedByHost(t)
		if got := readMark(t, id); !strings.HasPrefix(got, "failed after ") || !strings.HasSuffix(got, "unexpected EOF") {
			t.Fatalf("the pack's upload ended with %q", got)
		}
	})
	t.Run("a slow body to the admin pages is cut at the read timeout", func(t *testing.T) {
		s, ts := newServer(t, Config{Web: &Settings{ReadTimeout: feedDuration(500 * time.Millisecond)}})
		c := dialRaw(t, ts)
		fmt.Fprintf(c, "POST /admin/login HTTP/1.1\r\nHost: test\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 10000\r\n\r\ntoken=")
		stop := make(chan struct{})
		defer close(stop)
		c.trickle(stop)
		resp, body := c.response(t)
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, "could not read the login form") {
			t.Fatalf("%d %q", resp.StatusCode, body)
		}
		c.closedByHost(t)
		if n := len(s.sessions.m); n != 0 {
			t.Fatalf("%d sessions", n)
		}
	})
	t.Run("headers that do not arrive within the read-header timeout close the connection", func(t *testing.T) {
		_, ts := newServer(t, Config{Web: &Settings{ReadHeaderTimeout: feedDuration(300 * time.Millisecond)}})
		c := dialRaw(t, ts)
		fmt.Fprintf(c, "GET /web/hello HTTP/1.1\r\nHost: test\r\n")
		c.closedByHost(t)
	})
	t.Run("an idle kept-alive connection is closed after the idle timeout", func(t *testing.T) {
		_, ts := newServer(t, Config{Web: &Settings{IdleTimeout: feedDuration(300 * time.Millisecond)}})
		c := dialRaw(t, ts)
		fmt.Fprintf(c, "GET /web/hello HTTP/1.1\r\nHost: test\r\n\r\n")
		if resp, _ := c.response(t); resp.StatusCode != 200 || resp.Close {
			t.Fatalf("%d close=%v", resp.StatusCode, resp.Close)
		}
		c.closedByHost(t)
	})
	t.Run("an answer that streams longer than the read timeout is not cut by it", func(t *testing.T) {
		_, ts := newServer(t, Config{Web: &Settings{ReadTimeout: feedDuration(300 * time.Millisecond)}})
		resp, err := http.Post(ts.URL+"/web/stream?chunks=5&size=1000&delay=250", "text/plain", strings.NewReader("a small body"))
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != 200 || len(body) != 5000 {
			t.Fatalf("status %d, %d bytes, %v", resp.StatusCode, len(body), err)
		}
	})
}

func feedDuration(d time.Duration) feed.Duration { return feed.Duration(d) }

func mustAddr(s string) netip.Addr { return netip.MustParseAddr(s) }

func TestARequestBodyOverThePacksLimitIsRefused(t *testing.T) {
	_, ts := newServer(t, Config{Web: &Settings{PackMaxBodyBytes: map[string]int64{"web": 1000}}})
	t.Run("a declared length over the limit answers 413 without asking the pack", func(t *testing.T) {
		c := dialRaw(t, ts)
		id := uniqueID(t)
		fmt.Fprintf(c, "POST /web/upload?id=%s HTTP/1.1\r\nHost: test\r\nContent-Length: 1001\r\n\r\n", id)
		resp, body := c.response(t)
		if resp.StatusCode != http.StatusRequestEntityTooLarge || !strings.Contains(body, "The pages of web accept request bodies of at most 1000 bytes.") {
			t.Fatalf("%d %q", resp.StatusCode, body)
		}
		c.closedByHost(t)
		if _, err := os.Stat(markPath(t, "upload-"+id)); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("the pack was asked: %v", err)
		}
	})
	t.Run("a chunked body over the limit answers 413 and the pack never gets it whole", func(t *testing.T) {
		c := dialRaw(t, ts)
		id := uniqueID(t)
		fmt.Fprintf(c, "POST /web/upload?id=%s HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n", id)
		go func() {
			chunk := strings.Repeat("y", 600)
			for i := 0; i < 100; i++ {
				if _, err := fmt.Fprintf(c, "%x\r\n%s\r\n", len(chunk), chunk); err != nil {
					return
				}
			}
			fmt.Fprintf(c, "0\r\n\r\n")
		}()
		resp, body := c.response(t)
		if resp.StatusCode != http.StatusRequestEntityTooLarge || !strings.Contains(body, "at most 1000 bytes") {
			t.Fatalf("%d %q", resp.StatusCode, body)
		}
		got := readMark(t, id)
		var n int
		if _, err := fmt.Sscanf(got, "failed after %d bytes", &n); err != nil || n > 1000 {
			t.Fatalf("the pack's upload ended with %q", got)
		}
	})
	t.Run("a body at the limit passes whole", func(t *testing.T) {
		id := uniqueID(t)
		resp, err := http.Post(ts.URL+"/web/upload?id="+id, "text/plain", strings.NewReader(strings.Repeat("z", 1000)))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(body) != "read 1000 bytes\n" || readMark(t, id) != "read 1000 bytes" {
			t.Fatalf("%d %q", resp.StatusCode, body)
		}
	})
	t.Run("the default limit is a few megabytes", func(t *testing.T) {
		_, ts := newServer(t, Config{})
		c := dialRaw(t, ts)
		fmt.Fprintf(c, "PUT /web/echo HTTP/1.1\r\nHost: test\r\nContent-Length: %d\r\n\r\n", DefaultMaxBodyBytes+1)
		resp, body := c.response(t)
		if resp.StatusCode != http.StatusRequestEntityTooLarge || !strings.Contains(body, "at most 8388608 bytes") {
			t.Fatalf("%d %q", resp.StatusCode, body)
		}
	})
}

func TestAFloodOfLoginsIsLimitedPerClientAddress(t *testing.T) {
	s, ts := newServer(t, Config{Web: &Settings{LoginAttempts: 3, LoginInterval: feedDuration(time.Minute), TrustedProxies: []string{"127.0.0.1"}}})
	now := time.Now()
	s.logins.now = func() time.Time { return now }
	wrong := strings.Repeat("0", 64)
	login := func(tok string, hdr ...string) (*http.Response, string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, ts.URL+"/admin/login", strings.NewReader(url.Values{"token": {tok}}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		resp, err := noRedirect().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp, string(body)
	}
	for i := 0; i < 2; i++ {
		if resp, _ := login(wrong); resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("wrong token %d: %d", i+1, resp.StatusCode)
		}
	}
	// A wrong Bearer token is a failed login too.
	if resp, _ := get(t, nil, ts.URL+"/admin/api/status", "Authorization", "Bearer "+wrong); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("wrong bearer: %d", resp.StatusCode)
	}
	t.Run("once the attempts are spent, even the right token gets 429 and no session", func(t *testing.T) {
		resp, body := login(s.token)
		if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") != "60" ||
			!strings.Contains(body, "Too many failed logins from 127.0.0.1: try again in 60 seconds.") || len(resp.Cookies()) != 0 {
			t.Fatalf("%d %v %q", resp.StatusCode, resp.Header, body)
		}
		if n := len(s.sessions.m); n != 0 {
			t.Fatalf("%d sessions were made", n)
		}
	})
	t.Run("the API answers 429 in JSON, to the right Bearer token too", func(t *testing.T) {
		resp, body := get(t, nil, ts.URL+"/admin/api/status", "Authorization", "Bearer "+s.token)
		if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") != "60" ||
			body != "{\n  \"error\": \"Too many failed logins from 127.0.0.1: try again in 60 seconds.\"\n}\n" {
			t.Fatalf("%d %v %q", resp.StatusCode, resp.Header, body)
		}
	})
	t.Run("another client behind the trusted proxy is not limited", func(t *testing.T) {
		resp, _ := login(s.token, "X-Forwarded-For", "198.51.100.4")
		if resp.StatusCode != http.StatusSeeOther || len(resp.Cookies()) != 1 {
			t.Fatalf("%d %v", resp.StatusCode, resp.Cookies())
		}
	})
	t.Run("a spoofed X-Forwarded-For from the limited client does not help when its peer is not trusted", func(t *testing.T) {
		_, ts2 := newServer(t, Config{Web: &Settings{LoginAttempts: 1, LoginInterval: feedDuration(time.Minute)}})
		post := func(xff string) int {
			req, _ := http.NewRequest(http.MethodPost, ts2.URL+"/admin/login", strings.NewReader(url.Values{"token": {wrong}}.Encode()))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			req.Header.Set("X-Forwarded-For", xff)
			resp, err := noRedirect().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			return resp.StatusCode
		}
		if got := []int{post("192.0.2.1"), post("192.0.2.2")}; got[0] != 401 || got[1] != 429 {
			t.Fatalf("statuses %v, want [401 429]", got)
		}
	})
	t.Run("after the interval the client may try again", func(t *testing.T) {
		now = now.Add(time.Minute)
		resp, _ := login(s.token)
		if resp.StatusCode != http.StatusSeeOther || len(resp.Cookies()) != 1 {
			t.Fatalf("%d %v", resp.StatusCode, resp.Cookies())
		}
	})
}

func TestTheAdminCookieIsSecureWhenTheBrowserUsedHTTPS(t *testing.T) {
	cases := []struct {
		name     string
		settings Settings
		proto    string
		secure   bool
	}{
		{"plain http", Settings{}, "", false},
		{"a trusted proxy that says https", Settings{TrustedProxies: []string{"127.0.0.0/8"}}, "https", true},
		{"a trusted proxy that says http", Settings{TrustedProxies: []string{"127.0.0.0/8"}}, "http", false},
		{"an untrusted client that says https", Settings{TrustedProxies: []string{"10.0.0.0/8"}}, "https", false},
		{"the operator's secure_cookies", Settings{SecureCookies: true}, "", true},
	}
	for _, c := range cases {
		t.Run(c.name+fmt.Sprintf(" makes a cookie with Secure=%v", c.secure), func(t *testing.T) {
			settings := c.settings
			s, ts := newServer(t, Config{Web: &settings})
			req, _ := http.NewRequest(http.MethodPost, ts.URL+"/admin/login", strings.NewReader(url.Values{"token": {s.token}}.Encode()))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			if c.proto != "" {
				req.Header.Set("X-Forwarded-Proto", c.proto)
			}
			resp, err := noRedirect().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			cookies := resp.Cookies()
			if resp.StatusCode != http.StatusSeeOther || len(cookies) != 1 || cookies[0].Name != CookieName || cookies[0].Secure != c.secure {
				t.Fatalf("%d %+v", resp.StatusCode, cookies)
			}
		})
	}
}

func TestTwoPacksWithTheSamePrefixAreBothRefused(t *testing.T) {
	root := packtest.NewRoot(t)
	installPacks(t, root)
	packtest.Install(t, root, packtest.Build(t, "host/web/testdata/webpack", map[string]string{"id": "web2"}))
	sys, err := system.Open(context.Background(), system.Options{Root: root})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sys.Close)
	logs, logger := newLog()
	s, ts := newServer(t, Config{System: sys, Logger: logger})
	want := "packs web and web2 both declare the page prefix /web/, so neither pack's pages are served (the host serves the other packs); uninstall one of them, or have one change its prefix, and restart the host"

	if got := s.PageProblems(); len(got) != 1 || got[0] != want {
		t.Fatalf("problems %q", got)
	}
	if !strings.Contains(logs.String(), "pack pages refused: problem=\""+want+"\"") {
		t.Fatalf("log:\n%s", logs)
	}
	t.Run("their pages answer 503", func(t *testing.T) {
		resp, body := get(t, nil, ts.URL+"/web/hello")
		if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(body, "More than one pack claims this address") {
			t.Fatalf("%d %q", resp.StatusCode, body)
		}
	})
	t.Run("the admin status page names both", func(t *testing.T) {
		_, body := get(t, nil, ts.URL+"/admin/", "Authorization", "Bearer "+s.token)
		if !strings.Contains(body, "Problem: packs web and web2 both declare the page prefix /web/") {
			t.Fatalf("%s", body)
		}
	})
	t.Run("the other packs serve, and the home page does not list the refused ones", func(t *testing.T) {
		resp, body := get(t, nil, ts.URL+"/")
		if resp.StatusCode != 200 || strings.Contains(body, "/web/") || !strings.Contains(body, "No installed pack serves pages yet.") {
			t.Fatalf("%d %q", resp.StatusCode, body)
		}
		if resp, _ := get(t, nil, ts.URL+"/nothing-here"); resp.StatusCode != http.StatusNotFound {
			t.Fatalf("core: %d", resp.StatusCode)
		}
	})
}

func TestWebSettingsComeFromHostJSON(t *testing.T) {
	write := func(t *testing.T, text string) string {
		root := t.TempDir()
		if text != "" {
			if err := os.WriteFile(filepath.Join(root, "host.json"), []byte(text), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		return root
	}
	t.Run("no file means the defaults", func(t *testing.T) {
		s, err := LoadSettings(write(t, ""))
		if err != nil || s.MaxBodyBytes != DefaultMaxBodyBytes || time.Duration(s.ReadTimeout) != DefaultReadTimeout ||
			time.Duration(s.HeadTimeout) != DefaultHeadTimeout || s.LoginAttempts != DefaultLoginAttempts || s.SecureCookies {
			t.Fatalf("%+v %v", s, err)
		}
	})
	t.Run("the web section sets the limits and other sections are left to others", func(t *testing.T) {
		s, err := LoadSettings(write(t, `{"feed": {"url": "https://example.org/feed.json"}, "future": 1,
			"web": {"max_body_bytes": 1024, "pack_max_body_bytes": {"photos": 1048576}, "read_timeout": "5s",
			        "trusted_proxies": ["10.0.0.0/8", "192.0.2.1"], "secure_cookies": true}}`))
		if err != nil {
			t.Fatal(err)
		}
		if s.maxBody("web") != 1024 || s.maxBody("photos") != 1048576 || time.Duration(s.ReadTimeout) != 5*time.Second ||
			!s.SecureCookies || !s.trusted(mustAddr("10.1.2.3")) || !s.trusted(mustAddr("192.0.2.1")) || s.trusted(mustAddr("192.0.2.2")) {
			t.Fatalf("%+v", s)
		}
	})
	bad := []struct{ name, text, want string }{
		{"a misspelt key", `{"web": {"max_body_byte": 1}}`, `web: json: unknown field "max_body_byte"`},
		{"a negative duration", `{"web": {"read_timeout": "-1s"}}`, "web.read_timeout must not be negative"},
		{"a proxy that is no address", `{"web": {"trusted_proxies": ["proxy.example.org"]}}`,
			`web.trusted_proxies: "proxy.example.org" is neither an IP address nor a CIDR such as 10.0.0.0/8`},
		{"a zero pack limit", `{"web": {"pack_max_body_bytes": {"web": 0}}}`, "web.pack_max_body_bytes.web must be more than 0"},
		{"broken JSON", `{"web": `, "unexpected end of JSON input; fix the file"},
	}
	for _, c := range bad {
		t.Run(c.name+" is refused with what to fix", func(t *testing.T) {
			root := write(t, c.text)
			_, err := LoadSettings(root)
			if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), filepath.Join(root, "host.json")) {
				t.Fatalf("error %v, want %q", err, c.want)
			}
		})
	}
}
