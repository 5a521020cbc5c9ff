// Package web serves the host's HTTP side.
package web

import (
	"context"
	"errors"
	"fmt"
	"html/template"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"

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
}

// ShutdownGrace bounds how long in-flight requests may take to finish
// after a stop signal.
const ShutdownGrace = 10 * time.Second

// Serve listens on cfg.Addr until ctx ends, then shuts down gracefully.
// ready, when not nil, receives the bound address once listening.
func Serve(ctx context.Context, cfg Config, ready func(net.Addr)) error {
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.Addr, err)
	}
	srv := &http.Server{
		Handler:           Handler(cfg),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
	}
	if ready != nil {
		ready(ln.Addr())
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), ShutdownGrace)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("shut down: %w", err)
	}
	return nil
}

// Handler is the host's HTTP handler.
func Handler(cfg Config) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if cfg.AdminOnly && !strings.HasPrefix(r.URL.Path, "/admin") {
			maintenance(w, cfg.Reason)
			return
		}
		if r.URL.Path != "/" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		var ids []string
		for _, p := range cfg.System.Packs {
			ids = append(ids, p.ID+" "+p.Info.Version)
		}
		_ = homeTmpl.Execute(w, ids)
	})
	return mux
}

var homeTmpl = template.Must(template.New("home").Parse(`<!doctype html><html lang="en"><head><meta charset="utf-8"><title>packhost</title></head>
<body><h1>packhost</h1><p>Running packs:</p><ul>{{range .}}<li>{{.}}</li>{{end}}</ul></body></html>
`))

var maintenanceTmpl = template.Must(template.New("maintenance").Parse(`<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Down for maintenance</title></head>
<body><h1>Down for maintenance</h1><p>This site is being updated and will be back shortly.</p>{{if .}}<p>{{.}}</p>{{end}}</body></html>
`))

func maintenance(w http.ResponseWriter, reason string) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Retry-After", "120")
	w.WriteHeader(http.StatusServiceUnavailable)
	_ = maintenanceTmpl.Execute(w, reason)
}
