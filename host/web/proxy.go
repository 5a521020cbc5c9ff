package web

import (
	"context"
	"errors"
	"fmt"
	"html/template"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/packhost/packhost/host/packs"
	"github.com/packhost/packhost/internal/packpb"
)

// Default timeouts of pack pages.
const (
	// DefaultHeadTimeout bounds how long a pack may take to start its
	// answer (status and headers).
	DefaultHeadTimeout = 30 * time.Second
	// DefaultPageTimeout bounds a whole exchange, body included.
	DefaultPageTimeout = 10 * time.Minute
)

// chunkSize is the most request body bytes one message carries.
const chunkSize = 32 << 10

// route is one pack serving pages under a prefix.
type route struct {
	prefix string
	pack   *packs.Pack
}

// proxy forwards requests to the pack whose prefix is the longest match of
// the path, through the pack protocol's ServeHTTP stream.
type proxy struct {
	routes      []route // longest prefix first
	headTimeout time.Duration
	pageTimeout time.Duration
	log         hclog.Logger
	// secret is the admin token, stripped from requests to packs.
	secret string
}

func (p *proxy) withSecret(s string) *proxy {
	p.secret = s
	return p
}

func newProxy(list []*packs.Pack, headTimeout, pageTimeout time.Duration, log hclog.Logger) *proxy {
	p := &proxy{headTimeout: headTimeout, pageTimeout: pageTimeout, log: log}
	if p.headTimeout <= 0 {
		p.headTimeout = DefaultHeadTimeout
	}
	if p.pageTimeout <= 0 {
		p.pageTimeout = DefaultPageTimeout
	}
	for _, pk := range list {
		if pk.Info == nil || !slices.Contains(pk.Info.Capabilities, "http") || pk.Info.HttpPrefix == "" {
			continue
		}
		p.routes = append(p.routes, route{prefix: pk.Info.HttpPrefix, pack: pk})
	}
	slices.SortStableFunc(p.routes, func(a, b route) int { return len(b.prefix) - len(a.prefix) })
	return p
}

// match returns the pack serving path, or nil.
func (p *proxy) match(path string) *route {
	for i := range p.routes {
		if strings.HasPrefix(path, p.routes[i].prefix) {
			return &p.routes[i]
		}
	}
	return nil
}

func (p *proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// "/guestbook" asks for the pack at "/guestbook/".
	if !strings.HasSuffix(r.URL.Path, "/") {
		if m := p.match(r.URL.Path + "/"); m != nil && m.prefix == r.URL.Path+"/" {
			target := m.prefix
			if r.URL.RawQuery != "" {
				target += "?" + r.URL.RawQuery
			}
			http.Redirect(w, r, target, http.StatusMovedPermanently)
			return
		}
	}
	rt := p.match(r.URL.Path)
	if rt == nil {
		errorPage(w, http.StatusNotFound, "Not found", "No page lives at this address.")
		return
	}
	p.forward(w, r, rt)
}

// hopHeaders belong to one connection and are not forwarded either way.
var hopHeaders = map[string]bool{
	"Connection": true, "Keep-Alive": true, "Proxy-Authenticate": true, "Proxy-Authorization": true,
	"Proxy-Connection": true, "Te": true, "Trailer": true, "Transfer-Encoding": true, "Upgrade": true,
}

func (p *proxy) forward(w http.ResponseWriter, r *http.Request, rt *route) {
	ctx, cancel := context.WithTimeout(r.Context(), p.pageTimeout)
	defer cancel()
	var headTimedOut atomic.Bool
	headTimer := time.AfterFunc(p.headTimeout, func() {
		headTimedOut.Store(true)
		cancel()
	})
	defer headTimer.Stop()

	stream, err := rt.pack.RPC().ServeHTTP(ctx)
	if err != nil {
		p.fail(w, r, rt, err, headTimedOut.Load())
		return
	}
	head := &packpb.HTTPRequestHead{
		Method:     r.Method,
		Path:       r.URL.Path,
		RawQuery:   r.URL.RawQuery,
		RemoteAddr: r.RemoteAddr,
		Host:       r.Host,
		Headers:    make([]*packpb.Header, 0, len(r.Header)+1),
	}
	for k, v := range r.Header {
		if hopHeaders[k] {
			continue
		}
		if k == "Authorization" && p.secret != "" && slices.ContainsFunc(v, func(s string) bool { return strings.Contains(s, p.secret) }) {
			continue // the admin token is the host's, never a pack's
		}
		head.Headers = append(head.Headers, &packpb.Header{Key: k, Values: v})
	}
	if r.ContentLength > 0 {
		head.Headers = append(head.Headers, &packpb.Header{Key: "Content-Length", Values: []string{fmt.Sprint(r.ContentLength)}})
	}
	noBody := r.Body == nil || r.Body == http.NoBody || r.ContentLength == 0
	err = stream.Send(&packpb.HTTPRequestPart{Head: head})
	if err == nil && noBody {
		err = stream.CloseSend()
	}
	switch {
	case errors.Is(err, io.EOF):
		// gRPC's word for a stream ended from the pack's side: Recv
		// below returns the reason, which says more than EOF.
	case err != nil:
		p.fail(w, r, rt, err, headTimedOut.Load())
		return
	case !noBody:
		// The body streams from its own goroutine while this one waits
		// for the answer: a pack may answer before reading all of it.
		go func() {
			buf := make([]byte, chunkSize)
			for {
				n, rerr := r.Body.Read(buf)
				if n > 0 {
					if err := stream.Send(&packpb.HTTPRequestPart{Body: slices.Clone(buf[:n])}); err != nil {
						return
					}
				}
				if errors.Is(rerr, io.EOF) {
					_ = stream.CloseSend()
					return
				}
				if rerr != nil {
					cancel() // the client's body broke: the pack must not take half of it as whole
					return
				}
			}
		}()
	}

	first, err := stream.Recv()
	headTimer.Stop()
	if err != nil {
		p.fail(w, r, rt, err, headTimedOut.Load())
		return
	}
	rh := first.GetHead()
	if rh == nil {
		p.fail(w, r, rt, errors.New("the pack's answer has no head"), false)
		return
	}
	hdr := w.Header()
	for _, h := range rh.GetHeaders() {
		if hopHeaders[http.CanonicalHeaderKey(h.GetKey())] {
			continue
		}
		hdr[h.GetKey()] = h.GetValues()
	}
	code := int(rh.GetStatus())
	if code < 200 || code > 999 {
		code = http.StatusOK
	}
	w.WriteHeader(code)
	if len(first.GetBody()) > 0 {
		if _, err := w.Write(first.GetBody()); err != nil {
			return
		}
	}
	rc := http.NewResponseController(w)
	// The pack sends its head early only when it flushed or has more to
	// come: pass what arrived on at once.
	_ = rc.Flush()
	for {
		part, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return
		}
		if err != nil {
			if r.Context().Err() == nil {
				p.log.Warn("pack page broke off mid-answer", "pack", rt.pack.ID, "path", r.URL.Path, "error", err)
			}
			// The status is out already: break the connection so the
			// client does not take a partial body for a whole one.
			panic(http.ErrAbortHandler)
		}
		if _, err := w.Write(part.GetBody()); err != nil {
			return
		}
		_ = rc.Flush()
	}
}

// fail answers a request whose pack did not answer.
func (p *proxy) fail(w http.ResponseWriter, r *http.Request, rt *route, err error, headTimedOut bool) {
	switch {
	case r.Context().Err() != nil:
		// The client went away; nobody reads an answer.
		return
	case headTimedOut || status.Code(err) == codes.DeadlineExceeded:
		p.log.Warn("pack page timed out", "pack", rt.pack.ID, "path", r.URL.Path, "timeout", p.headTimeout)
		errorPage(w, http.StatusGatewayTimeout, "The page took too long",
			fmt.Sprintf("The pack %s did not answer within %s.", rt.pack.ID, p.headTimeout))
	default:
		msg := err.Error()
		if rt.pack.Exited() {
			msg = "the pack's process has exited"
		}
		p.log.Error("pack page failed", "pack", rt.pack.ID, "path", r.URL.Path, "error", msg)
		errorPage(w, http.StatusBadGateway, "The page could not be served",
			fmt.Sprintf("The pack %s could not answer: %s.", rt.pack.ID, msg))
	}
}

var errorTmpl = template.Must(template.New("error").Parse(`<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{{.Title}}</title></head>
<body><h1>{{.Title}}</h1><p>{{.Text}}</p></body></html>
`))

func errorPage(w http.ResponseWriter, code int, title, text string) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	_ = errorTmpl.Execute(w, struct{ Title, Text string }{title, text})
}
