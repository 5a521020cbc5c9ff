package packrt

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/packhost/packhost/internal/wire"
)

// pagesShutdownGrace bounds how long requests in flight may run on once
// the host is done with the pack. The host lets its own requests finish
// before it stops its packs, so this only matters when the host dies.
const pagesShutdownGrace = 5 * time.Second

// pagesServer serves the pack's pages as plain HTTP on the unix socket the
// host named in wire.EnvPagesSocket. Only the host can reach that socket:
// it lies in the host's private (0700) socket directory.
//
// The requests reaching Pack.Pages carry the full path the browser asked
// for (it starts with Pack.Prefix; wrap the handler in http.StripPrefix to
// see paths relative to it), the client's address as RemoteAddr, and the
// X-Forwarded-For, -Host and -Proto headers the host set. A request's
// context leads to the pack's database (DB) and ends when the client goes
// away, the host's timeout passes, or the host shuts down. Responses stream:
// http.Flusher sends what was written so far, and WebSocket upgrades work.
type pagesServer struct {
	srv *http.Server
	ln  net.Listener
}

// listenPages starts serving the pack's pages on the socket at path. It
// returns nil (and serves nothing) when the pack has no pages or the host
// named no socket.
func listenPages(rt *runtime, path string) (*pagesServer, error) {
	if rt.pack.Pages == nil || path == "" {
		return nil, nil
	}
	// A socket left by a pack that died is in the way; the host gives each
	// start a path of its own, so nothing live is removed here.
	_ = os.Remove(path)
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("listen for pages on %s: %w", path, err)
	}
	srv := &http.Server{
		Handler:     pagesHandler(rt, rt.pack.Pages),
		BaseContext: func(net.Listener) context.Context { return withRuntime(context.Background(), rt) },
		// The host is the only client: it keeps its connections open for
		// reuse and closes them when it is done.
		IdleTimeout: 5 * time.Minute,
		ErrorLog:    rt.log.StandardLogger(&hclog.StandardLoggerOptions{InferLevels: true}),
	}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			rt.log.Error("pages stopped serving", "socket", path, "error", err)
		}
	}()
	return &pagesServer{srv: srv, ln: ln}, nil
}

// close lets requests in flight finish for a moment, then stops.
func (p *pagesServer) close() {
	if p == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), pagesShutdownGrace)
	defer cancel()
	if err := p.srv.Shutdown(ctx); err != nil {
		_ = p.srv.Close()
	}
}

// pagesHandler wraps the pack's handler: the client's address replaces the
// host's socket peer, and a panic answers 500 (when nothing was sent yet)
// and is logged under the pack's name.
func pagesHandler(rt *runtime, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if a := r.Header.Get(wire.HeaderRemoteAddr); a != "" {
			r.RemoteAddr = a
		}
		r.Header.Del(wire.HeaderRemoteAddr)
		tw := &trackingWriter{ResponseWriter: w}
		defer func() {
			v := recover()
			if v == nil {
				return
			}
			if v == http.ErrAbortHandler {
				panic(v)
			}
			rt.log.Error("page handler panicked", "method", r.Method, "path", r.URL.Path, "panic", v)
			if tw.started || tw.hijacked {
				// The status is out: break the connection so the client
				// does not take a partial body for a whole one.
				panic(http.ErrAbortHandler)
			}
			h := w.Header()
			clear(h)
			h.Set("Content-Type", "text/plain; charset=utf-8")
			h.Set("X-Content-Type-Options", "nosniff")
			w.WriteHeader(http.StatusInternalServerError)
			_, _ = io.WriteString(w, "internal error in pack "+rt.pack.ID+"\n")
		}()
		h.ServeHTTP(tw, r)
	})
}

// trackingWriter records whether the response started, so a panic can
// still answer 500 before it did. It passes Flush, Hijack and ReadFrom
// through (and Unwrap, for http.ResponseController), so streaming,
// WebSocket libraries and sendfile work as on a plain net/http server.
type trackingWriter struct {
	http.ResponseWriter
	started  bool
	hijacked bool
}

func (t *trackingWriter) WriteHeader(code int) {
	if code >= 200 || code == http.StatusSwitchingProtocols {
		t.started = true
	}
	t.ResponseWriter.WriteHeader(code)
}

func (t *trackingWriter) Write(p []byte) (int, error) {
	t.started = true
	return t.ResponseWriter.Write(p)
}

func (t *trackingWriter) ReadFrom(r io.Reader) (int64, error) {
	t.started = true
	if rf, ok := t.ResponseWriter.(io.ReaderFrom); ok {
		return rf.ReadFrom(r)
	}
	return io.Copy(t.ResponseWriter, r)
}

func (t *trackingWriter) Flush() {
	t.started = true
	_ = http.NewResponseController(t.ResponseWriter).Flush()
}

func (t *trackingWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, rw, err := http.NewResponseController(t.ResponseWriter).Hijack()
	if err == nil {
		t.hijacked = true
	}
	return c, rw, err
}

func (t *trackingWriter) Unwrap() http.ResponseWriter { return t.ResponseWriter }
