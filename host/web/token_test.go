package web

import (
	"bytes"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
)

func TestTheAdminTokenIsMadeOnceWithMode0600AndOnlyItsHashIsKept(t *testing.T) {
	root := t.TempDir()
	var out bytes.Buffer
	hash, tok, err := EnsureToken(root, "127.0.0.1:8080", &out, hclog.NewNullLogger())
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(root, TokenFile)
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("token file mode %04o, want 0600", fi.Mode().Perm())
	}
	if len(tok) != 64 || strings.Count(out.String(), tok) != 1 {
		t.Fatalf("token %q, printed %q", tok, out.String())
	}
	data, _ := os.ReadFile(path)
	if strings.Contains(string(data), tok) || strings.TrimSpace(string(data)) != HashToken(tok) || hash != HashToken(tok) {
		t.Fatalf("the token file holds %q, want only the token's hash", data)
	}
	out.Reset()
	again, made, err := EnsureToken(root, "[::1]:9000", &out, hclog.NewNullLogger())
	if err != nil || again != hash || made != "" || out.Len() != 0 {
		t.Fatalf("second start: hash %q (want the same), made %q, printed %q, err %v", again, made, out.String(), err)
	}
	// With the file present a public address is allowed.
	if _, _, err := EnsureToken(root, "0.0.0.0:8080", &out, hclog.NewNullLogger()); err != nil {
		t.Fatal(err)
	}
}

func TestATokenFileOfAnEarlierHostBecomesItsHash(t *testing.T) {
	root := t.TempDir()
	path := filepath.Join(root, TokenFile)
	tok := strings.Repeat("ab", 32)
	if err := os.WriteFile(path, []byte(tok+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	hash, made, err := EnsureToken(root, "127.0.0.1:8080", nil, hclog.NewNullLogger())
	if err != nil || made != "" || hash != HashToken(tok) {
		t.Fatalf("hash %q made %q err %v", hash, made, err)
	}
	if data, _ := os.ReadFile(path); strings.TrimSpace(string(data)) != HashToken(tok) {
		t.Fatalf("the file still holds %q", data)
	}
}

func TestANonLoopbackAddressIsRefusedWithoutATokenFile(t *testing.T) {
	for _, addr := range []string{"0.0.0.0:8080", ":8080", "192.0.2.7:80", "example.com:80"} {
		t.Run(addr, func(t *testing.T) {
			root := t.TempDir()
			_, _, err := EnsureToken(root, addr, nil, hclog.NewNullLogger())
			if err == nil || !strings.Contains(err.Error(), "which is not a loopback address, before the admin token exists") {
				t.Fatalf("err %v", err)
			}
			if entries, _ := os.ReadDir(root); len(entries) != 0 {
				t.Fatalf("the refused start wrote %v", entries)
			}
		})
	}
}

func TestATokenFileOthersCanReadIsRefused(t *testing.T) {
	root := t.TempDir()
	path := filepath.Join(root, TokenFile)
	if err := os.WriteFile(path, []byte(strings.Repeat("ab", 32)+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, _, err := EnsureToken(root, "127.0.0.1:8080", nil, hclog.NewNullLogger())
	if err == nil || !strings.Contains(err.Error(), "has mode 0644: other users may read it; run `chmod 600") {
		t.Fatalf("err %v", err)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o644 {
		t.Fatalf("the file's mode changed to %04o", fi.Mode().Perm())
	}
}

// TestAResetTokenTakesEffectAtOnceAndEndsSessions logs in with a session,
// resets the token as `host admin reset-token` does: the old token and
// the session no longer open the admin pages, the new token does.
func TestAResetTokenTakesEffectAtOnceAndEndsSessions(t *testing.T) {
	sys := *sharedSystem(t)
	sys.Root = t.TempDir()
	s, ts := newServer(t, Config{System: &sys})
	old := s.token
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar}
	resp, err := c.PostForm(ts.URL+"/admin/login", url.Values{"token": {old}})
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("login: %v %v", resp, err)
	}
	resp.Body.Close()
	time.Sleep(10 * time.Millisecond) // a new modification time
	tok, _, err := NewToken(sys.Root, false)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		client *http.Client
		bearer string
		want   int
	}{
		{"the session made with the old token", c, "", http.StatusUnauthorized},
		{"the old token", http.DefaultClient, old, http.StatusUnauthorized},
		{"the new token", http.DefaultClient, tok, http.StatusOK},
	} {
		req, _ := http.NewRequest(http.MethodGet, ts.URL+"/admin/api/status", nil)
		if tc.bearer != "" {
			req.Header.Set("Authorization", "Bearer "+tc.bearer)
		}
		resp, err := tc.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("%s: %d, want %d", tc.name, resp.StatusCode, tc.want)
		}
	}
}
