package web

import (
	"context"
	"errors"
	"fmt"
	"html/template"
	"net"
	"net/http"
	"net/http/httputil"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/packhost/packhost/host/packs"
	"github.com/packhost/packhost/internal/wire"
)

// Default timeouts of pack pages.
const (
	// DefaultHeadTimeout bounds how long a pack may take to start its
	// answer (status and headers), counted from the start of the request.
	DefaultHeadTimeout = 30 * time.Second
	// DefaultPageTimeout bounds a whole exchange, body included (not a
	// WebSocket once it is open).
	DefaultPageTimeout = 10 * time.Minute
)

// route is one pack serving pages under a prefix, with the reverse proxy
// that reaches its socket; or, when conflict is set, a prefix that two or
// more packs declare and that is therefore not served.
type route struct {
	prefix   string
	pack     *packs.Pack
	rp       *httputil.ReverseProxy
	tr       *http.Transport
	conflict string
}

// routeTable is the packs serving pages at one moment, longest prefix
// first. The proxy reads the current one per request, so the host can swap
// it (a pack restarted) while it serves.
type routeTable struct {
	routes   []*route
	problems []string // the duplicate prefixes, for the log and the admin page
}

// match returns the route serving path, or nil.
func (t *routeTable) match(path string) *route {
	for _, rt := range t.routes {
		if strings.HasPrefix(path, rt.prefix) {
			return rt
		}
	}
	return nil
}

// proxy forwards requests to the pack whose prefix is the longest match of
// the path, over plain HTTP on the pack's unix socket
// (net/http/httputil.ReverseProxy): answers stream as the pack flushes
// them, WebSocket upgrades and trailers pass, the admin credentials never
// reach a pack, and a pack cannot set or clear the admin cookie.
type proxy struct {
	s     *Server
	log   hclog.Logger
	table atomic.Pointer[routeTable]
	swap  sync.Mutex // one setPacks at a time
	bufs  bufferPool
}

func newProxy(s *Server, list []*packs.Pack) *proxy {
	p := &proxy{s: s, log: s.log.Named("pages")}
	p.setPacks(list)
	return p
}

// setPacks builds the route table of the running packs and swaps it in.
// Packs that declare the same prefix are refused, all of them: none of
// their pages are served. The connections to packs no longer in the table
// are closed once idle.
func (p *proxy) setPacks(list []*packs.Pack) *routeTable {
	p.swap.Lock()
	defer p.swap.Unlock()
	old := p.table.Load()
	byPrefix := map[string][]*packs.Pack{}
	for _, pk := range list {
		if pk.Info == nil || !slices.Contains(pk.Info.Capabilities, "http") || pk.Info.HttpPrefix == "" || pk.PagesSocket() == "" {
			continue
		}
		byPrefix[pk.Info.HttpPrefix] = append(byPrefix[pk.Info.HttpPrefix], pk)
	}
	t := &routeTable{}
	for prefix, list := range byPrefix {
		if len(list) > 1 {
			ids := make([]string, len(list))
			for i, pk := range list {
				ids[i] = pk.ID
			}
			sort.Strings(ids)
			msg := fmt.Sprintf("packs %s all declare the page prefix %s, so none of their pages are served (the host serves the other packs); uninstall all but one of them, or have one change its prefix, and restart the host",
				strings.Join(ids, ", "), prefix)
			if len(ids) == 2 {
				msg = fmt.Sprintf("packs %s and %s both declare the page prefix %s, so neither pack's pages are served (the host serves the other packs); uninstall one of them, or have one change its prefix, and restart the host",
					ids[0], ids[1], prefix)
			}
			t.problems = append(t.problems, msg)
			t.routes = append(t.routes, &route{prefix: prefix, conflict: msg})
			continue
		}
		t.routes = append(t.routes, p.newRoute(prefix, list[0], old))
	}
	sort.Slice(t.routes, func(i, j int) bool {
		if len(t.routes[i].prefix) != len(t.routes[j].prefix) {
			return len(t.routes[i].prefix) > len(t.routes[j].prefix)
		}
		return t.routes[i].prefix < t.routes[j].prefix
	})
	sort.Strings(t.problems)
	for _, msg := range t.problems {
		p.log.Error("pack pages refused", "problem", msg)
	}
	p.table.Store(t)
	if old != nil {
		for _, rt := range old.routes {
			if rt.tr != nil && !slices.ContainsFunc(t.routes, func(n *route) bool { return n.tr == rt.tr }) {
				rt.tr.CloseIdleConnections()
			}
		}
	}
	return t
}

// newRoute makes the route to pk, reusing the transport of the same pack
// process from the old table.
func (p *proxy) newRoute(prefix string, pk *packs.Pack, old *routeTable) *route {
	rt := &route{prefix: prefix, pack: pk}
	if old != nil {
		for _, o := range old.routes {
			if o.pack == pk && o.tr != nil {
				rt.tr = o.tr
			}
		}
	}
	if rt.tr == nil {
		sock := pk.PagesSocket()
		rt.tr = &http.Transport{
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, "unix", sock)
			},
			MaxIdleConnsPerHost: 256,
			IdleConnTimeout:     90 * time.Second,
			// The body passes as the pack wrote it; the browser asked
			// for what it can read.
			DisableCompression: true,
		}
	}
	rt.rp = &httputil.ReverseProxy{
		Rewrite:   p.rewrite,
		Transport: rt.tr,
		// An answer streams: ReverseProxy flushes every write of an
		// answer of unknown length (a pack that flushed before it was
		// done: chunked) and of server-sent events, whatever this says.
		// An answer of known length goes out as the server's buffer
		// fills. FlushInterval -1 would also flush every such answer's
		// head on its own first, from a timer goroutine: a write
		// syscall and a goroutine more per request: about 80 µs of host
		// CPU per small page against 60 µs without, in one run here.
		FlushInterval:  0,
		BufferPool:     &p.bufs,
		ModifyResponse: func(resp *http.Response) error { return p.modifyResponse(rt, resp) },
		ErrorHandler:   func(w http.ResponseWriter, r *http.Request, err error) { p.fail(w, r, rt, err) },
		ErrorLog:       p.log.StandardLogger(&hclog.StandardLoggerOptions{InferLevels: true}),
	}
	return rt
}

func (p *proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	t := p.table.Load()
	// "/guestbook" asks for the pack at "/guestbook/".
	if !strings.HasSuffix(r.URL.Path, "/") {
		if m := t.match(r.URL.Path + "/"); m != nil && m.prefix == r.URL.Path+"/" {
			target := m.prefix
			if r.URL.RawQuery != "" {
				target += "?" + r.URL.RawQuery
			}
			http.Redirect(w, r, target, http.StatusMovedPermanently)
			return
		}
	}
	rt := t.match(r.URL.Path)
	switch {
	case rt == nil:
		errorPage(w, http.StatusNotFound, "Not found", "No page lives at this address.")
	case rt.conflict != "":
		errorPage(w, http.StatusServiceUnavailable, "These pages are not served",
			"More than one pack claims this address, so the host serves none of them; the site's operator must remove all but one.")
	default:
		p.forward(w, r, rt)
	}
}

// exchange is one forwarded request's timers, found by the proxy's hooks
// in the request's context.
type exchange struct {
	headTimer    *time.Timer
	headTimedOut atomic.Bool
}

type exchangeKey struct{}

func (p *proxy) forward(w http.ResponseWriter, r *http.Request, rt *route) {
	// The pack may answer before it has read the whole body, and the host
	// answers a limit or a timeout while the client still sends it: reads
	// and writes go on side by side.
	_ = http.NewResponseController(w).EnableFullDuplex()
	g := guardOf(r.Context())
	if !p.s.noLimits && r.Body != nil && r.Body != http.NoBody {
		limit := p.s.settings.maxBody(rt.pack.ID)
		if r.ContentLength > limit {
			p.tooBig(w, r, rt, limit)
			return
		}
		r.Body = &limitedBody{ReadCloser: r.Body, left: limit, guard: g}
	}

	ctx, cancel := context.WithCancel(r.Context())
	if !isUpgrade(r) {
		// A WebSocket lives as long as its two ends want; everything else
		// ends within the page timeout.
		ctx, cancel = context.WithTimeout(r.Context(), time.Duration(p.s.settings.PageTimeout))
	}
	defer cancel()
	x := &exchange{}
	x.headTimer = time.AfterFunc(time.Duration(p.s.settings.HeadTimeout), func() {
		x.headTimedOut.Store(true)
		cancel()
	})
	defer x.headTimer.Stop()
	rt.rp.ServeHTTP(w, r.WithContext(context.WithValue(ctx, exchangeKey{}, x)))
}

func isUpgrade(r *http.Request) bool {
	if r.Header.Get("Upgrade") == "" {
		return false
	}
	for _, v := range r.Header.Values("Connection") {
		for _, tok := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(tok), "upgrade") {
				return true
			}
		}
	}
	return false
}

// rewrite makes the request to the pack: the path and query as the client
// sent them, the client's Host, X-Forwarded-For/-Host/-Proto (passed on
// from a trusted proxy, set from the connection otherwise), the client's
// address for RemoteAddr, and no admin credentials.
func (p *proxy) rewrite(pr *httputil.ProxyRequest) {
	pr.Out.URL.Scheme = "http"
	pr.Out.URL.Host = "pack"
	pr.Out.Host = pr.In.Host
	trusted := p.s.fromTrustedProxy(pr.In)
	if trusted {
		pr.Out.Header["X-Forwarded-For"] = pr.In.Header["X-Forwarded-For"]
	}
	pr.SetXForwarded()
	if trusted {
		if proto := p.s.forwardedProto(pr.In); proto == "https" || proto == "http" {
			pr.Out.Header.Set("X-Forwarded-Proto", proto)
		}
		if h := pr.In.Header.Get("X-Forwarded-Host"); h != "" {
			pr.Out.Header.Set("X-Forwarded-Host", h)
		}
	}
	pr.Out.Header.Set(wire.HeaderRemoteAddr, pr.In.RemoteAddr)
	p.s.stripAdminCredentials(pr.Out.Header)
}

// stripAdminCredentials removes what would let a pack act as the admin: an
// Authorization header carrying the admin token, and the admin session
// cookie (scoped to /admin, so a browser does not send it to pack pages,
// but cookies ignore ports, and a client may send anything).
func (s *Server) stripAdminCredentials(h http.Header) {
	if slices.ContainsFunc(h.Values("Authorization"), func(v string) bool {
		scheme, tok, ok := strings.Cut(v, " ")
		return ok && strings.EqualFold(scheme, "Bearer") && s.isToken(strings.TrimSpace(tok))
	}) {
		h.Del("Authorization")
	}
	cookies := h.Values("Cookie")
	if !slices.ContainsFunc(cookies, func(v string) bool { return strings.Contains(strings.ToLower(v), strings.ToLower(CookieName)) }) {
		return
	}
	var kept []string
	for _, line := range cookies {
		for _, part := range strings.Split(line, ";") {
			name, _, _ := strings.Cut(part, "=")
			if part = strings.TrimSpace(part); part == "" || strings.EqualFold(strings.TrimSpace(name), CookieName) {
				continue
			}
			kept = append(kept, part)
		}
	}
	h.Del("Cookie")
	if len(kept) > 0 {
		h.Set("Cookie", strings.Join(kept, "; "))
	}
}

// modifyResponse runs when the pack's answer head arrives: it stops the
// head timer and drops any Set-Cookie of the admin cookie.
func (p *proxy) modifyResponse(rt *route, resp *http.Response) error {
	if x, ok := resp.Request.Context().Value(exchangeKey{}).(*exchange); ok {
		if !x.headTimer.Stop() && x.headTimedOut.Load() {
			return errHeadTimeout
		}
	}
	if dropped := dropAdminCookie(resp.Header); dropped > 0 {
		p.log.Warn("a pack's answer tried to set the admin cookie; the header was dropped",
			"pack", rt.pack.ID, "path", resp.Request.URL.Path, "headers", dropped)
	}
	return nil
}

var errHeadTimeout = errors.New("the pack did not answer in time")

// dropAdminCookie removes the Set-Cookie headers that name the admin
// cookie (in any case, or that cannot be read at all) and returns how many
// it removed.
func dropAdminCookie(h http.Header) int {
	lines := h.Values("Set-Cookie")
	if len(lines) == 0 {
		return 0
	}
	kept := lines[:0:0]
	for _, line := range lines {
		c, err := http.ParseSetCookie(line)
		ours := strings.Contains(strings.ToLower(line), strings.ToLower(CookieName)) // unreadable: judged by its text
		if err == nil {
			ours = strings.EqualFold(c.Name, CookieName)
		}
		if !ours {
			kept = append(kept, line)
		}
	}
	dropped := len(lines) - len(kept)
	if dropped > 0 {
		h.Del("Set-Cookie")
		for _, line := range kept {
			h.Add("Set-Cookie", line)
		}
	}
	return dropped
}

// fail answers a request the pack did not answer.
func (p *proxy) fail(w http.ResponseWriter, r *http.Request, rt *route, err error) {
	g := guardOf(r.Context())
	x, _ := r.Context().Value(exchangeKey{}).(*exchange)
	switch {
	case g.tooBig.Load():
		p.tooBig(w, r, rt, p.s.settings.maxBody(rt.pack.ID))
	case g.readTimedOut.Load():
		p.log.Warn("a client sent its request body too slowly; closed", "pack", rt.pack.ID, "path", r.URL.Path,
			"client", r.RemoteAddr, "read_timeout", time.Duration(p.s.settings.ReadTimeout))
		p.answerNow(w, http.StatusRequestTimeout, "The request took too long",
			fmt.Sprintf("The request's body did not arrive within %s.", time.Duration(p.s.settings.ReadTimeout)))
	case x != nil && x.headTimedOut.Load():
		p.log.Warn("pack page timed out", "pack", rt.pack.ID, "path", r.URL.Path, "timeout", time.Duration(p.s.settings.HeadTimeout))
		p.answerNow(w, http.StatusGatewayTimeout, "The page took too long",
			fmt.Sprintf("The pack %s did not answer within %s.", rt.pack.ID, time.Duration(p.s.settings.HeadTimeout)))
	case errors.Is(r.Context().Err(), context.DeadlineExceeded):
		p.log.Warn("pack page timed out", "pack", rt.pack.ID, "path", r.URL.Path, "timeout", time.Duration(p.s.settings.PageTimeout))
		p.answerNow(w, http.StatusGatewayTimeout, "The page took too long",
			fmt.Sprintf("The pack %s did not finish within %s.", rt.pack.ID, time.Duration(p.s.settings.PageTimeout)))
	case r.Context().Err() != nil:
		// The client went away; nobody reads an answer.
	default:
		msg := err.Error()
		switch {
		case rt.pack.Exited():
			msg = "the pack's process has exited"
		case errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ECONNREFUSED):
			msg = fmt.Sprintf("it does not listen on its pages socket %s (a pack built with an SDK older than this host's serves its pages over gRPC, not there: rebuild it; it reports SDK %s)",
				rt.pack.PagesSocket(), rt.pack.Info.SdkVersion)
		}
		// The visitor learns which pack failed; the operator, in the log,
		// why.
		p.log.Error("pack page failed", "pack", rt.pack.ID, "path", r.URL.Path, "error", msg)
		p.answerNow(w, http.StatusBadGateway, "The page could not be served",
			fmt.Sprintf("The pack %s could not answer; the host's log says why.", rt.pack.ID))
	}
}

// answerNow sends an error page at once, even while the client is still
// sending a body nobody will read, and closes the connection after it:
// the read deadline moves to now, so the rest of the body is not waited
// for.
func (p *proxy) answerNow(w http.ResponseWriter, code int, title, text string) {
	w.Header().Set("Connection", "close")
	errorPage(w, code, title, text)
	rc := http.NewResponseController(w)
	_ = rc.Flush()
	_ = rc.SetReadDeadline(time.Now())
}

func (p *proxy) tooBig(w http.ResponseWriter, r *http.Request, rt *route, limit int64) {
	p.log.Warn("request body over the limit refused", "pack", rt.pack.ID, "path", r.URL.Path, "limit_bytes", limit,
		"content_length", r.ContentLength)
	p.answerNow(w, http.StatusRequestEntityTooLarge, "The request is too large",
		fmt.Sprintf("The pages of %s accept request bodies of at most %d bytes.", rt.pack.ID, limit))
}

// bufferPool lends the proxy its copy buffers.
type bufferPool struct{ p sync.Pool }

func (b *bufferPool) Get() []byte {
	if v, ok := b.p.Get().(*[]byte); ok {
		return *v
	}
	return make([]byte, 32<<10)
}

func (b *bufferPool) Put(buf []byte) { b.p.Put(&buf) }

var errorTmpl = template.Must(template.New("error").Parse(`<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{{.Title}}</title></head>
<body><h1>{{.Title}}</h1><p>{{.Text}}</p></body></html>
`))

func errorPage(w http.ResponseWriter, code int, title, text string) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	_ = errorTmpl.Execute(w, struct{ Title, Text string }{title, text})
}
