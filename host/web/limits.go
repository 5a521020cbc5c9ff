package web

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
)

// The client of a request, as the host believes it: the connection's peer,
// or, when that peer is a trusted proxy, what the proxy says of the client
// (X-Forwarded-For, X-Forwarded-Proto).

// peerAddr is the address of the connection's other end.
func peerAddr(r *http.Request) netip.Addr {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		host, _, _ := net.SplitHostPort(r.RemoteAddr)
		a, _ := netip.ParseAddr(host)
		return a.Unmap()
	}
	return ap.Addr().Unmap()
}

// fromTrustedProxy reports whether the request came through a trusted
// proxy.
func (s *Server) fromTrustedProxy(r *http.Request) bool {
	return s.settings.trusted(peerAddr(r))
}

// clientAddr is the client's address: the peer, or the last address in
// X-Forwarded-For that is not a trusted proxy when the peer is one.
func (s *Server) clientAddr(r *http.Request) netip.Addr {
	peer := peerAddr(r)
	if !s.settings.trusted(peer) {
		return peer
	}
	var hops []string
	for _, v := range r.Header.Values("X-Forwarded-For") {
		hops = append(hops, strings.Split(v, ",")...)
	}
	for i := len(hops) - 1; i >= 0; i-- {
		a, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
		if err != nil {
			return peer // a garbled chain: believe only what we saw
		}
		if a = a.Unmap(); !s.settings.trusted(a) {
			return a
		}
	}
	return peer
}

// forwardedProto is the scheme a trusted proxy says the client used, or "".
func (s *Server) forwardedProto(r *http.Request) string {
	if !s.fromTrustedProxy(r) {
		return ""
	}
	v := r.Header.Values("X-Forwarded-Proto")
	if len(v) == 0 {
		return ""
	}
	// The nearest proxy's word is the last one.
	parts := strings.Split(v[len(v)-1], ",")
	return strings.ToLower(strings.TrimSpace(parts[len(parts)-1]))
}

// secure reports whether the admin cookie must be Secure for this request:
// it came over TLS, or a trusted proxy says the client used https, or the
// operator said every request does (secure_cookies).
func (s *Server) secure(r *http.Request) bool {
	return r.TLS != nil || s.settings.SecureCookies || s.forwardedProto(r) == "https"
}

// requestGuard is what the limits found out about one request, read when
// it fails.
type requestGuard struct {
	readTimedOut atomic.Bool // the body did not arrive within ReadTimeout
	tooBig       atomic.Bool // the body passed the pack's limit
}

type guardKey struct{}

// guardOf is the request's guard; a request without a body has none, and
// gets a fresh one that nothing sets.
func guardOf(ctx context.Context) *requestGuard {
	g, _ := ctx.Value(guardKey{}).(*requestGuard)
	if g == nil {
		return &requestGuard{}
	}
	return g
}

// readDeadline gives a request's body ReadTimeout to arrive, counted from
// the end of its headers, and lifts the deadline once the body is read, so
// a long answer (a stream, a WebSocket) is not cut by it. A body that is
// late fails to read, and the connection is closed after the answer.
//
// (http.Server's own ReadTimeout would do the first half, but it stays on
// the connection while the answer streams, and its expiry cancels the
// request.)
func (s *Server) readDeadline(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.noLimits || r.Body == nil || r.Body == http.NoBody {
			next.ServeHTTP(w, r)
			return
		}
		g := &requestGuard{}
		r = r.WithContext(context.WithValue(r.Context(), guardKey{}, g))
		rc := http.NewResponseController(w)
		if err := rc.SetReadDeadline(time.Now().Add(time.Duration(s.settings.ReadTimeout))); err != nil {
			next.ServeHTTP(w, r) // not a connection with deadlines (a test recorder)
			return
		}
		r.Body = &deadlineBody{ReadCloser: r.Body, rc: rc, guard: g}
		next.ServeHTTP(w, r)
	})
}

type deadlineBody struct {
	io.ReadCloser
	rc    *http.ResponseController
	guard *requestGuard
	done  atomic.Bool // the body was read to its end
}

func (b *deadlineBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	switch {
	case err == io.EOF && !b.done.Load():
		b.done.Store(true)
		_ = b.rc.SetReadDeadline(time.Time{})
	case err != nil && errors.Is(err, os.ErrDeadlineExceeded):
		b.guard.readTimedOut.Store(true)
	}
	return n, err
}

// Close gives up the rest of a body that was not read to its end: the
// read deadline moves to now, so neither a read in flight (the proxy's, to
// a pack that gave up) nor net/http's drain of the rest waits for a slow
// client. The connection is then closed after the answer.
func (b *deadlineBody) Close() error {
	if !b.done.Load() {
		_ = b.rc.SetReadDeadline(time.Now())
	}
	return b.ReadCloser.Close()
}

// limitedBody fails a read past the pack's body limit.
type limitedBody struct {
	io.ReadCloser
	left  int64
	guard *requestGuard
}

// errTooBig is what a pack's request body reads after the limit.
var errTooBig = errors.New("request body is larger than the limit")

func (b *limitedBody) Read(p []byte) (int, error) {
	if b.left < 0 {
		return 0, errTooBig
	}
	if int64(len(p)) > b.left+1 {
		p = p[:b.left+1]
	}
	n, err := b.ReadCloser.Read(p)
	b.left -= int64(n)
	if b.left < 0 {
		b.guard.tooBig.Store(true)
		return n + int(b.left), errTooBig // never pass the byte past the limit on
	}
	return n, err
}

// loginLimiter limits failed logins per client address: a token bucket of
// LoginAttempts, refilled by one every LoginInterval. A failed login (a
// wrong token at the form, or a wrong Bearer token) takes one; a client
// whose bucket is empty gets 429 before its token is even compared.
type loginLimiter struct {
	burst int
	every rate.Limit
	now   func() time.Time

	mu sync.Mutex
	m  map[netip.Prefix]*rate.Limiter
}

// maxLoginClients bounds the addresses the limiter remembers; full ones
// (no failure to remember) are swept first. Past it, new addresses share
// one bucket, so a flood from many addresses is still limited.
const maxLoginClients = 10000

func newLoginLimiter(attempts int, interval time.Duration) *loginLimiter {
	return &loginLimiter{burst: attempts, every: rate.Every(interval), now: time.Now, m: map[netip.Prefix]*rate.Limiter{}}
}

// key groups an address: one IPv4 address, or an IPv6 /64 (what one
// client usually holds).
func loginKey(a netip.Addr) netip.Prefix {
	if a.Is6() {
		p, _ := a.Prefix(64)
		return p
	}
	return netip.PrefixFrom(a, a.BitLen())
}

var overflowKey = netip.PrefixFrom(netip.IPv4Unspecified(), 0)

func (l *loginLimiter) bucket(a netip.Addr) *rate.Limiter {
	k := loginKey(a)
	l.mu.Lock()
	defer l.mu.Unlock()
	if b, ok := l.m[k]; ok {
		return b
	}
	if len(l.m) >= maxLoginClients {
		now := l.now()
		for k, b := range l.m {
			if b.TokensAt(now) >= float64(l.burst) {
				delete(l.m, k)
			}
		}
	}
	if len(l.m) >= maxLoginClients {
		k = overflowKey
		if b, ok := l.m[k]; ok {
			return b
		}
	}
	b := rate.NewLimiter(l.every, l.burst)
	l.m[k] = b
	return b
}

// wait returns how long the client must wait before it may try again, 0
// when it may try now.
func (l *loginLimiter) wait(a netip.Addr) time.Duration {
	b := l.bucket(a)
	now := l.now()
	if b.TokensAt(now) >= 1 {
		return 0
	}
	r := b.ReserveN(now, 1)
	d := r.DelayFrom(now)
	r.CancelAt(now)
	return max(d, time.Second)
}

// failed records a failed login from a.
func (l *loginLimiter) failed(a netip.Addr) {
	l.bucket(a).AllowN(l.now(), 1)
}

// tooManyLogins answers 429 to a client that failed to log in too often.
func (s *Server) tooManyLogins(w http.ResponseWriter, r *http.Request, client netip.Addr, wait time.Duration) {
	secs := int(math.Ceil(wait.Seconds()))
	w.Header().Set("Retry-After", fmt.Sprint(secs))
	msg := fmt.Sprintf("Too many failed logins from %s: try again in %d seconds.", client, secs)
	s.log.Warn("admin login refused: too many failed logins", "client", client.String(), "retry_after_s", secs)
	if strings.HasPrefix(r.URL.Path, "/admin/api/") {
		writeJSON(w, http.StatusTooManyRequests, map[string]string{"error": msg})
		return
	}
	s.render(w, r, http.StatusTooManyRequests, "login", loginPage{Next: "/admin/", Problem: msg})
}
