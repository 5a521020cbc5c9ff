package web

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/packhost/packhost/host/feed"
)

// Default limits of the web front (Settings).
const (
	// DefaultMaxBodyBytes is the largest request body a pack page gets.
	DefaultMaxBodyBytes = 8 << 20
	// DefaultReadHeaderTimeout bounds reading a request's headers.
	DefaultReadHeaderTimeout = 10 * time.Second
	// DefaultReadTimeout bounds reading a request's body, from the end of
	// its headers.
	DefaultReadTimeout = 30 * time.Second
	// DefaultIdleTimeout closes a kept-alive connection without requests.
	DefaultIdleTimeout = 2 * time.Minute
	// DefaultLoginAttempts failed logins are allowed from one client
	// address at once; after that, one more per DefaultLoginInterval.
	DefaultLoginAttempts = 10
	DefaultLoginInterval = 6 * time.Second
)

// Settings are the limits of the web front: the "web" section of
// <root>/host.json. Every field is optional; durations are written like
// "30s". Other sections of host.json belong to other parts of the host.
//
//	{"web": {
//	  "max_body_bytes": 8388608,
//	  "pack_max_body_bytes": {"photos": 104857600},
//	  "read_header_timeout": "10s", "read_timeout": "30s", "idle_timeout": "2m",
//	  "head_timeout": "30s", "page_timeout": "10m",
//	  "login_attempts": 10, "login_interval": "6s",
//	  "trusted_proxies": ["127.0.0.1/32"],
//	  "secure_cookies": false
//	}}
type Settings struct {
	// MaxBodyBytes is the largest request body forwarded to a pack;
	// larger ones answer 413. PackMaxBodyBytes sets it per pack id.
	MaxBodyBytes     int64            `json:"max_body_bytes,omitempty"`
	PackMaxBodyBytes map[string]int64 `json:"pack_max_body_bytes,omitempty"`
	// ReadHeaderTimeout bounds reading a request's headers; ReadTimeout
	// reading its body (a client that is slower gets 408 and its
	// connection closed); IdleTimeout closes an unused kept-alive
	// connection.
	ReadHeaderTimeout feed.Duration `json:"read_header_timeout,omitempty"`
	ReadTimeout       feed.Duration `json:"read_timeout,omitempty"`
	IdleTimeout       feed.Duration `json:"idle_timeout,omitempty"`
	// HeadTimeout bounds how long a pack may take to start its answer,
	// counted from the start of the request (its body's upload included);
	// PageTimeout bounds a whole exchange but a WebSocket's. See
	// DefaultHeadTimeout and DefaultPageTimeout.
	HeadTimeout feed.Duration `json:"head_timeout,omitempty"`
	PageTimeout feed.Duration `json:"page_timeout,omitempty"`
	// LoginAttempts is how many failed logins (the login form, or a wrong
	// Bearer token) one client address may make at once; after that it
	// gets 429 until LoginInterval has passed for each further attempt.
	LoginAttempts int           `json:"login_attempts,omitempty"`
	LoginInterval feed.Duration `json:"login_interval,omitempty"`
	// TrustedProxies are the addresses (CIDR, or a single IP) of reverse
	// proxies in front of the host. From them, and only from them, the
	// host believes X-Forwarded-For (the client address, for the login
	// limit and the packs) and X-Forwarded-Proto (https makes the admin
	// cookie Secure).
	TrustedProxies []string `json:"trusted_proxies,omitempty"`
	// SecureCookies makes the admin cookie Secure whatever the request
	// says: set it when every browser reaches the host over https.
	SecureCookies bool `json:"secure_cookies,omitempty"`

	proxies []netip.Prefix
}

// LoadSettings reads the "web" section of <root>/host.json, with the
// defaults for what it leaves out. A missing file or section is all
// defaults; an unknown key inside "web" is an error (a misspelt limit must
// not silently fall back to its default).
func LoadSettings(root string) (Settings, error) {
	path := filepath.Join(root, feed.HostConfigFile)
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return Settings{}.withDefaults()
	}
	if err != nil {
		return Settings{}, fmt.Errorf("read host config: %w", err)
	}
	var file struct {
		Web json.RawMessage `json:"web"`
	}
	if err := json.Unmarshal(data, &file); err != nil {
		return Settings{}, fmt.Errorf("host config %s: %w; fix the file", path, err)
	}
	var s Settings
	if len(file.Web) > 0 && !bytes.Equal(file.Web, []byte("null")) {
		dec := json.NewDecoder(bytes.NewReader(file.Web))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&s); err != nil {
			return Settings{}, fmt.Errorf("host config %s: web: %v; fix the file (the README's Security section lists the settings)", path, err)
		}
	}
	s, err = s.withDefaults()
	if err != nil {
		return Settings{}, fmt.Errorf("host config %s: %w", path, err)
	}
	return s, nil
}

// withDefaults checks the settings and fills in the defaults.
func (s Settings) withDefaults() (Settings, error) {
	var bad []string
	for name, d := range map[string]feed.Duration{
		"read_header_timeout": s.ReadHeaderTimeout, "read_timeout": s.ReadTimeout, "idle_timeout": s.IdleTimeout,
		"head_timeout": s.HeadTimeout, "page_timeout": s.PageTimeout, "login_interval": s.LoginInterval,
	} {
		if d < 0 {
			bad = append(bad, fmt.Sprintf("web.%s must not be negative", name))
		}
	}
	if s.MaxBodyBytes < 0 {
		bad = append(bad, "web.max_body_bytes must not be negative")
	}
	for id, n := range s.PackMaxBodyBytes {
		if n <= 0 {
			bad = append(bad, fmt.Sprintf("web.pack_max_body_bytes.%s must be more than 0", id))
		}
	}
	if s.LoginAttempts < 0 {
		bad = append(bad, "web.login_attempts must not be negative")
	}
	s.proxies = nil
	for _, p := range s.TrustedProxies {
		pfx, err := parseProxy(p)
		if err != nil {
			bad = append(bad, fmt.Sprintf("web.trusted_proxies: %q is neither an IP address nor a CIDR such as 10.0.0.0/8", p))
			continue
		}
		s.proxies = append(s.proxies, pfx)
	}
	if len(bad) > 0 {
		sort.Strings(bad)
		return s, errors.New(strings.Join(bad, "; "))
	}
	def := func(d *feed.Duration, v time.Duration) {
		if *d == 0 {
			*d = feed.Duration(v)
		}
	}
	def(&s.ReadHeaderTimeout, DefaultReadHeaderTimeout)
	def(&s.ReadTimeout, DefaultReadTimeout)
	def(&s.IdleTimeout, DefaultIdleTimeout)
	def(&s.HeadTimeout, DefaultHeadTimeout)
	def(&s.PageTimeout, DefaultPageTimeout)
	def(&s.LoginInterval, DefaultLoginInterval)
	if s.MaxBodyBytes == 0 {
		s.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if s.LoginAttempts == 0 {
		s.LoginAttempts = DefaultLoginAttempts
	}
	return s, nil
}

func parseProxy(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		return p.Masked(), err
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// maxBody is the body limit of the pack with this id.
func (s Settings) maxBody(id string) int64 {
	if n, ok := s.PackMaxBodyBytes[id]; ok {
		return n
	}
	return s.MaxBodyBytes
}

// trusted reports whether a is one of the trusted proxies.
func (s Settings) trusted(a netip.Addr) bool {
	a = a.Unmap()
	for _, p := range s.proxies {
		if p.Contains(a) {
			return true
		}
	}
	return false
}
