package web

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// testClock is the sessions' clock in tests: it moves only when told.
type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *testClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *testClock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// login posts the token to the login form, sending old as the cookie
// when set, and returns the session cookie it gets.
func login(t *testing.T, c *http.Client, base, token string, old *http.Cookie) *http.Cookie {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, base+"/admin/login", strings.NewReader(url.Values{"token": {token}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if old != nil {
		req.AddCookie(old)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("login: %d", resp.StatusCode)
	}
	for _, ck := range resp.Cookies() {
		if ck.Name == CookieName {
			return ck
		}
	}
	t.Fatalf("login set no %s cookie: %v", CookieName, resp.Header.Values("Set-Cookie"))
	return nil
}

func cookieHdr(ck *http.Cookie) []string { return []string{"Cookie", CookieName + "=" + ck.Value} }

// postWith posts a form with the session cookie and returns the status.
func postWith(t *testing.T, u string, ck *http.Cookie, form url.Values, hdr ...string) *http.Response {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, u, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if ck != nil {
		req.AddCookie(ck)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := noRedirect().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

var csrfPattern = regexp.MustCompile(`name="csrf" value="([^"]*)"`)

// csrfField is the CSRF value of the first form on an admin page.
func csrfField(t *testing.T, body string) string {
	t.Helper()
	m := csrfPattern.FindStringSubmatch(body)
	if m == nil || m[1] == "" {
		t.Fatalf("no csrf field on the page: %q", body)
	}
	return m[1]
}

var hex64 = regexp.MustCompile(`^[0-9a-f]{64}$`)

func TestEachLoginIsItsOwnSessionAndLogoutEndsIt(t *testing.T) {
	s, ts := newServer(t, Config{})
	a := login(t, noRedirect(), ts.URL, s.token, nil)
	b := login(t, noRedirect(), ts.URL, s.token, nil)
	if a.Value == b.Value || !hex64.MatchString(a.Value) || !hex64.MatchString(b.Value) {
		t.Fatalf("two logins got cookies %q and %q; want two different random ids", a.Value, b.Value)
	}
	if a.MaxAge != int(SessionMaxAge/time.Second) || a.Secure {
		t.Fatalf("cookie over plain HTTP: %+v", a)
	}
	respA, pageA := get(t, nil, ts.URL+"/admin/", cookieHdr(a)...)
	respB, pageB := get(t, nil, ts.URL+"/admin/", cookieHdr(b)...)
	if respA.StatusCode != 200 || respB.StatusCode != 200 {
		t.Fatalf("status page with the cookies: %d, %d", respA.StatusCode, respB.StatusCode)
	}
	csrfA, csrfB := csrfField(t, pageA), csrfField(t, pageB)
	if csrfA == csrfB || !hex64.MatchString(csrfA) {
		t.Fatalf("CSRF fields %q and %q; want one per session", csrfA, csrfB)
	}

	t.Run("a session's CSRF field does not work with another session", func(t *testing.T) {
		if resp := postWith(t, ts.URL+"/admin/logout", b, url.Values{"csrf": {csrfA}}); resp.StatusCode != http.StatusForbidden {
			t.Fatalf("logout of b with a's field: %d", resp.StatusCode)
		}
		if resp, _ := get(t, nil, ts.URL+"/admin/", cookieHdr(b)...); resp.StatusCode != 200 {
			t.Fatalf("b after a refused logout: %d", resp.StatusCode)
		}
	})
	t.Run("after logout the same cookie is refused, the other session goes on", func(t *testing.T) {
		resp := postWith(t, ts.URL+"/admin/logout", a, url.Values{"csrf": {csrfA}})
		if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/admin/login" {
			t.Fatalf("logout: %d %v", resp.StatusCode, resp.Header)
		}
		cleared := false
		for _, ck := range resp.Cookies() {
			cleared = cleared || (ck.Name == CookieName && ck.Value == "" && ck.MaxAge < 0)
		}
		if !cleared {
			t.Fatalf("logout did not clear the cookie: %v", resp.Header.Values("Set-Cookie"))
		}
		for _, p := range []string{"/admin/", "/admin/backups", "/admin/api/status"} {
			if resp, body := get(t, nil, ts.URL+p, cookieHdr(a)...); resp.StatusCode != http.StatusUnauthorized {
				t.Fatalf("GET %s with the logged-out cookie: %d %q", p, resp.StatusCode, body)
			}
		}
		if resp := postWith(t, ts.URL+"/admin/feed/check", a, url.Values{"csrf": {csrfA}}); resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("a form posted with the logged-out cookie and its field: %d", resp.StatusCode)
		}
		if resp, _ := get(t, nil, ts.URL+"/admin/", cookieHdr(b)...); resp.StatusCode != 200 {
			t.Fatalf("the other session after a's logout: %d", resp.StatusCode)
		}
	})
	t.Run("logging in again ends the session the browser had", func(t *testing.T) {
		c := login(t, noRedirect(), ts.URL, s.token, b)
		if c.Value == b.Value {
			t.Fatal("the login kept the old session id")
		}
		if resp, _ := get(t, nil, ts.URL+"/admin/", cookieHdr(b)...); resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("the replaced session: %d", resp.StatusCode)
		}
		if resp, _ := get(t, nil, ts.URL+"/admin/", cookieHdr(c)...); resp.StatusCode != 200 {
			t.Fatalf("the new session: %d", resp.StatusCode)
		}
	})
	t.Run("a Bearer request needs no CSRF field, a cookie one does", func(t *testing.T) {
		c := login(t, noRedirect(), ts.URL, s.token, nil)
		if resp := postWith(t, ts.URL+"/admin/feed/check", nil, url.Values{}, "Authorization", "Bearer "+s.token); resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("bearer feed check: %d", resp.StatusCode)
		}
		if resp := postWith(t, ts.URL+"/admin/feed/check", c, url.Values{}); resp.StatusCode != http.StatusForbidden {
			t.Fatalf("cookie feed check without the field: %d", resp.StatusCode)
		}
	})
}

func TestSessionsExpireWhenIdleAndAtTheirMaximumAge(t *testing.T) {
	s, ts := newServer(t, Config{})
	clk := &testClock{t: time.Date(2026, 11, 20, 8, 0, 0, 0, time.UTC)}
	s.sessions.now = clk.now
	status := func(ck *http.Cookie) int {
		resp, _ := get(t, nil, ts.URL+"/admin/api/feed", cookieHdr(ck)...)
		return resp.StatusCode
	}

	t.Run("use keeps a session open; 12 hours without use end it", func(t *testing.T) {
		ck := login(t, noRedirect(), ts.URL, s.token, nil)
		for i := 0; i < 3; i++ {
			clk.add(SessionIdle - time.Minute)
			if got := status(ck); got != 200 {
				t.Fatalf("after %d idle periods just under 12h: %d", i+1, got)
			}
		}
		clk.add(SessionIdle)
		if got := status(ck); got != http.StatusUnauthorized {
			t.Fatalf("after 12h idle: %d", got)
		}
		clk.add(-SessionIdle) // back in time: the session was deleted, not just out of date
		if got := status(ck); got != http.StatusUnauthorized {
			t.Fatalf("an expired session came back: %d", got)
		}
		clk.add(SessionIdle)
	})
	t.Run("a session in use ends 7 days after its login", func(t *testing.T) {
		ck := login(t, noRedirect(), ts.URL, s.token, nil)
		var used time.Duration
		for used+11*time.Hour < SessionMaxAge {
			clk.add(11 * time.Hour)
			used += 11 * time.Hour
			if got := status(ck); got != 200 {
				t.Fatalf("%s after login: %d", used, got)
			}
		}
		clk.add(SessionMaxAge - used)
		if got := status(ck); got != http.StatusUnauthorized {
			t.Fatalf("7 days after login: %d", got)
		}
	})
	t.Run("expired sessions are swept at the next login", func(t *testing.T) {
		for i := 0; i < 3; i++ {
			login(t, noRedirect(), ts.URL, s.token, nil)
		}
		clk.add(SessionIdle)
		ck := login(t, noRedirect(), ts.URL, s.token, nil)
		s.sessions.mu.Lock()
		n := len(s.sessions.m)
		s.sessions.mu.Unlock()
		if n != 1 || status(ck) != 200 {
			t.Fatalf("%d sessions held after the sweep, want 1", n)
		}
	})
}

func TestTheSessionCookieIsSecureOverTLS(t *testing.T) {
	s, _ := newServer(t, Config{})
	ts := httptest.NewTLSServer(s.Handler())
	defer ts.Close()
	c := ts.Client()
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	ck := login(t, c, ts.URL, s.token, nil)
	if !ck.Secure || !ck.HttpOnly || ck.SameSite != http.SameSiteStrictMode || ck.Path != "/admin" {
		t.Fatalf("cookie over TLS: %+v", ck)
	}
}
