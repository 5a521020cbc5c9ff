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
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/packhost/packhost/host/decide"
	"github.com/packhost/packhost/host/feed"
	"github.com/packhost/packhost/host/report"
	"github.com/packhost/packhost/host/system"
)

// Config says what to serve.
type Config struct {
	Addr string
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
	// HeadTimeout and PageTimeout bound pack pages (DefaultHeadTimeout,
	// DefaultPageTimeout when 0); ShutdownGrace bounds how long in-flight
	// requests may take to finish after a stop signal (DefaultShutdownGrace).
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
	log      hclog.Logger
	token    string
	sessions *sessions
	proxy    *proxy
	feed     *feedWatcher
	handler  http.Handler
}

// New checks the address against the admin token (a non-loopback address
// needs an existing token file), creates the token at the first start and
// builds the handler.
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
	token, err := EnsureToken(cfg.System.Root, cfg.Addr, cfg.Stdout, cfg.Logger)
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
	s := &Server{
		cfg:      cfg,
		log:      cfg.Logger,
		token:    token,
		sessions: newSessions(nil),
		proxy:    newProxy(cfg.System.Packs, cfg.HeadTimeout, cfg.PageTimeout, cfg.Logger.Named("pages")).withSecret(token),
		feed:     newFeedWatcher(cfg.System.Root, *fc, cfg.Logger.Named("feed")),
	}
	s.handler = s.routes()
	return s, nil
}

// Handler is the host's HTTP handler.
func (s *Server) Handler() http.Handler { return s.handler }

func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/admin", http.RedirectHandler("/admin/", http.StatusMovedPermanently))
	mux.Handle("/admin/", s.admin())
	if s.cfg.AdminOnly {
		mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { maintenance(w, s.cfg.Reason) })
	} else {
		mux.Handle("/", s.proxy)
	}
	return mux
}

// Serve listens on cfg.Addr until ctx ends, then shuts down gracefully:
// it stops accepting, lets in-flight requests finish within
// cfg.ShutdownGrace, then closes what is left. ready, when not nil,
// receives the bound address once listening. The caller stops the packs
// after Serve returns.
func Serve(ctx context.Context, cfg Config, ready func(net.Addr)) error {
	s, err := New(cfg)
	if err != nil {
		return err
	}
	return s.Serve(ctx, ready)
}

// Serve is the package-level Serve for a Server made by New.
func (s *Server) Serve(ctx context.Context, ready func(net.Addr)) error {
	ln, err := net.Listen("tcp", s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", s.cfg.Addr, err)
	}
	srv := &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          s.log.StandardLogger(&hclog.StandardLoggerOptions{InferLevels: true}),
	}
	if ready != nil {
		ready(ln.Addr())
	}
	fctx, stopFeed := context.WithCancel(ctx)
	defer stopFeed()
	go s.feed.run(fctx)

	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve on %s: %w", s.cfg.Addr, err)
	case <-ctx.Done():
	}
	s.log.Info("stopping: no new connections; waiting for requests in flight", "grace", s.cfg.ShutdownGrace)
	sctx, cancel := context.WithTimeout(context.Background(), s.cfg.ShutdownGrace)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		s.log.Warn("requests still running after the grace period were cut off", "grace", s.cfg.ShutdownGrace)
		_ = srv.Close()
	}
	return nil
}
