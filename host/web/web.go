// Package web serves the host's HTTP side: pack pages proxied to the packs
// under their path prefixes, the admin pages and their JSON twin under
// /admin, the maintenance page, and the periodic update feed check.
package web

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/packhost/packhost/host/decide"
	"github.com/packhost/packhost/host/feed"
	"github.com/packhost/packhost/host/packs"
	"github.com/packhost/packhost/host/report"
	"github.com/packhost/packhost/host/system"
)

// Config says what to serve.
type Config struct {
	// Addr is where pack pages (and, without AdminAddr, the admin pages)
	// are served.
	Addr string
	// AdminAddr, when set, serves the admin pages on a listener of their
	// own, a separate origin; Addr then serves no /admin, and AdminAddr
	// serves no pack page.
	AdminAddr string
	// AdminOnly serves only /admin; every other path answers 503 with a
	// maintenance page.
	AdminOnly bool
	// Reason is shown on the maintenance page.
	Reason string
	System *system.System
	Logger hclog.Logger

	// Report makes the status report the admin pages show; System.Report
	// when nil. It is the document of `host status --json`.
	Report func(context.Context) (*report.Report, error)
	// Decisions is what the host decided at its start and why, shown on
	// /admin/decisions.
	Decisions []decide.Decision
	// Stdout receives the admin token the one time it is created; the
	// logger when nil.
	Stdout io.Writer
	// Feed overrides the feed settings of <root>/host.json when set.
	Feed *feed.Config
	// Web overrides the web settings of <root>/host.json when set.
	Web *Settings
	// HeadTimeout and PageTimeout, when set, override the settings' (see
	// DefaultHeadTimeout, DefaultPageTimeout); ShutdownGrace bounds how
	// long in-flight requests may take to finish after a stop signal
	// (DefaultShutdownGrace).
	HeadTimeout, PageTimeout, ShutdownGrace time.Duration
}

// DefaultShutdownGrace bounds how long in-flight requests may take to
// finish after a stop signal.
const DefaultShutdownGrace = 10 * time.Second

// RetryAfter is the Retry-After of the maintenance page, in seconds.
const RetryAfter = "120"

// Server is the host's HTTP side, made by New.
type Server struct {
	cfg      Config
	settings Settings
	log      hclog.Logger
	// token is the admin token when this server made it (printed once);
	// tokens follows the file that holds its hash.
	token    string
	tokens   *tokenFile
	sessions *sessions
	logins   *loginLimiter
	proxy    *proxy
	feed     *feedWatcher
	handler  http.Handler
	adminH   http.Handler // nil when the admin pages share Addr
	// noLimits turns the request body limits and read deadline off, for
	// the benchmark that measures what they cost.
	noLimits bool
}

// New checks the admin address against the admin token (a non-loopback
// address needs an existing token file), creates the token at the first
// start, reads the settings and builds the handlers.
func New(cfg Config) (*Server, error) {
	if cfg.System == nil {
		return nil, errors.New("web: no system to serve")
	}
	if cfg.Logger == nil {
		cfg.Logger = hclog.NewNullLogger()
	}
	if cfg.Report == nil {
		cfg.Report = cfg.System.Report
	}
	if cfg.ShutdownGrace <= 0 {
		cfg.ShutdownGrace = DefaultShutdownGrace
	}
	if cfg.AdminAddr != "" && cfg.AdminAddr == cfg.Addr {
		return nil, fmt.Errorf("--admin-addr %s is the same as --addr: give the admin pages another port (or leave --admin-addr out to serve them on --addr)", cfg.AdminAddr)
	}
	adminAddr := cfg.Addr
	if cfg.AdminAddr != "" {
		adminAddr = cfg.AdminAddr
	}
	hash, token, err := EnsureToken(cfg.System.Root, adminAddr, cfg.Stdout, cfg.Logger)
	if err != nil {
		return nil, err
	}
	fc := cfg.Feed
	if fc == nil {
		hc, err := feed.LoadHostConfig(cfg.System.Root)
		if err != nil {
			return nil, err
		}
		fc = &hc.Feed
	}
	var ws Settings
	if cfg.Web != nil {
		ws = *cfg.Web
	} else if ws, err = LoadSettings(cfg.System.Root); err != nil {
		return nil, err
	}
	if cfg.HeadTimeout > 0 {
		ws.HeadTimeout = feed.Duration(cfg.HeadTimeout)
	}
	if cfg.PageTimeout > 0 {
		ws.PageTimeout = feed.Duration(cfg.PageTimeout)
	}
	if ws, err = ws.withDefaults(); err != nil {
		return nil, fmt.Errorf("web settings: %w", err)
	}
	s := &Server{
		cfg:      cfg,
		settings: ws,
		log:      cfg.Logger,
		token:    token,
		sessions: newSessions(nil),
		logins:   newLoginLimiter(ws.LoginAttempts, time.Duration(ws.LoginInterval)),
		feed:     newFeedWatcher(cfg.System.Root, *fc, cfg.Logger.Named("feed")),
	}
	s.tokens = &tokenFile{path: filepath.Join(cfg.System.Root, TokenFile), hash: hash, reset: s.sessions.endAll}
	if fi, err := os.Stat(s.tokens.path); err == nil {
		s.tokens.mod, s.tokens.size = fi.ModTime(), fi.Size()
	}
	s.proxy = newProxy(s, cfg.System.Packs)
	s.handler, s.adminH = s.routes()
	return s, nil
}

// Handler is the host's HTTP handler for Addr.
func (s *Server) Handler() http.Handler { return s.handler }

// AdminHandler is the handler for AdminAddr; nil when the admin pages
// share Addr.
func (s *Server) AdminHandler() http.Handler { return s.adminH }

// ServePacks replaces the packs whose pages are served, as after a pack
// was restarted: each request finds its pack in the list current when it
// arrives. It returns the problems of the new list (duplicate prefixes),
// which are also logged and shown on the admin status page.
func (s *Server) ServePacks(list []*packs.Pack) []string {
	return s.proxy.setPacks(list).problems
}

// PageProblems are the problems of the packs' pages being served now.
func (s *Server) PageProblems() []string { return s.proxy.table.Load().problems }

func (s *Server) routes() (main, admin http.Handler) {
	adminTree := s.admin()
	notHere := func(w http.ResponseWriter, r *http.Request) {
		errorPage(w, http.StatusNotFound, "Not found", "No page lives at this address.")
	}
	mux := http.NewServeMux()
	if s.cfg.AdminAddr == "" {
		mux.Handle("/admin", http.RedirectHandler("/admin/", http.StatusMovedPermanently))
		mux.Handle("/admin/", adminTree)
	} else {
		// Never to a pack either: a pack under /admin/ would see the
		// admin cookie, which browsers send to every port of a host.
		mux.HandleFunc("/admin", notHere)
		mux.HandleFunc("/admin/", notHere)
		amux := http.NewServeMux()
		amux.Handle("/admin", http.RedirectHandler("/admin/", http.StatusMovedPermanently))
		amux.Handle("/admin/", adminTree)
		amux.Handle("/{$}", http.RedirectHandler("/admin/", http.StatusSeeOther))
		amux.HandleFunc("/", notHere)
		admin = s.readDeadline(amux)
	}
	if s.cfg.AdminOnly {
		mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { maintenance(w, s.cfg.Reason) })
	} else {
		mux.HandleFunc("GET /{$}", s.home)
		mux.Handle("/", s.proxy)
	}
	return s.readDeadline(mux), admin
}

// Serve listens on cfg.Addr (and cfg.AdminAddr) until ctx ends, then shuts
// down gracefully: it stops accepting, lets in-flight requests finish
// within cfg.ShutdownGrace, then closes what is left. ready, when not nil,
// receives the bound address of cfg.Addr once both listen. The caller
// stops the packs after Serve returns.
func Serve(ctx context.Context, cfg Config, ready func(net.Addr)) error {
	s, err := New(cfg)
	if err != nil {
		return err
	}
	return s.Serve(ctx, ready)
}

// httpServer is the http.Server of one listener, with the read-header and
// idle timeouts (the body's read timeout is per request: readDeadline).
func (s *Server) httpServer(h http.Handler) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: time.Duration(s.settings.ReadHeaderTimeout),
		IdleTimeout:       time.Duration(s.settings.IdleTimeout),
		ErrorLog:          s.log.StandardLogger(&hclog.StandardLoggerOptions{InferLevels: true}),
	}
}

// Serve is the package-level Serve for a Server made by New.
func (s *Server) Serve(ctx context.Context, ready func(net.Addr)) error {
	type listener struct {
		addr string
		ln   net.Listener
		srv  *http.Server
	}
	ls := []*listener{{addr: s.cfg.Addr, srv: s.httpServer(s.handler)}}
	if s.adminH != nil {
		ls = append(ls, &listener{addr: s.cfg.AdminAddr, srv: s.httpServer(s.adminH)})
	}
	for i, l := range ls {
		ln, err := net.Listen("tcp", l.addr)
		if err != nil {
			for _, o := range ls[:i] {
				_ = o.ln.Close()
			}
			return fmt.Errorf("listen on %s: %w", l.addr, err)
		}
		l.ln = ln
	}
	if len(ls) > 1 {
		s.log.Info("serving the admin pages on their own address; none on the main one", "admin_addr", "http://"+ls[1].ln.Addr().String()+"/admin/")
	}
	if ready != nil {
		ready(ls[0].ln.Addr())
	}
	fctx, stopFeed := context.WithCancel(ctx)
	defer stopFeed()
	go s.feed.run(fctx)

	errc := make(chan error, len(ls))
	for _, l := range ls {
		go func() {
			if err := l.srv.Serve(l.ln); !errors.Is(err, http.ErrServerClosed) {
				errc <- fmt.Errorf("serve on %s: %w", l.addr, err)
			}
		}()
	}
	var serveErr error
	select {
	case serveErr = <-errc:
	case <-ctx.Done():
		s.log.Info("stopping: no new connections; waiting for requests in flight", "grace", s.cfg.ShutdownGrace)
	}
	sctx, cancel := context.WithTimeout(context.Background(), s.cfg.ShutdownGrace)
	defer cancel()
	var wg sync.WaitGroup
	for _, l := range ls {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := l.srv.Shutdown(sctx); err != nil {
				s.log.Warn("requests still running after the grace period were cut off", "addr", l.addr, "grace", s.cfg.ShutdownGrace)
				_ = l.srv.Close()
			}
		}()
	}
	wg.Wait()
	return serveErr
}
