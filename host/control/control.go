// Package control is how a command reaches the host serving the same
// system: the serving host answers on a unix socket in a private directory
// (mode 0700, so only the host's user can reach it) that its system lock
// names (host/locks), and `host status` asks it for the status report
// instead of starting every pack again.
package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/packhost/packhost/host/packs"
	"github.com/packhost/packhost/host/report"
)

// Server answers on the control socket of a serving host.
type Server struct {
	dir  string
	path string
	srv  *http.Server
}

// Listen makes the private directory and serves status (a fresh report of
// the running system) on its socket until Close.
func Listen(status func(context.Context) (*report.Report, error), log hclog.Logger) (*Server, error) {
	dir, err := packs.MakePrivateDir("packhost-ctl-")
	if err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	path := filepath.Join(dir, "control.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("control socket: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, r *http.Request) {
		rep, err := status(r.Context())
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = rep.WriteJSON(w)
	})
	s := &Server{dir: dir, path: path, srv: &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second,
		ErrorLog: log.StandardLogger(&hclog.StandardLoggerOptions{InferLevels: true})}}
	go func() { _ = s.srv.Serve(ln) }()
	return s, nil
}

// Path is the socket's path, recorded in the serving host's lock.
func (s *Server) Path() string { return s.path }

// Close stops answering and removes the directory.
func (s *Server) Close() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = s.srv.Shutdown(ctx)
	_ = os.RemoveAll(s.dir)
}

// Status asks the serving host at the socket path for its status report,
// within timeout.
func Status(ctx context.Context, path string, timeout time.Duration) (*report.Report, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	client := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		},
	}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://host/status", nil)
	if err != nil {
		return nil, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("ask the serving host: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		var msg [512]byte
		n, _ := resp.Body.Read(msg[:])
		return nil, fmt.Errorf("ask the serving host: %s: %s", resp.Status, msg[:n])
	}
	var r report.Report
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		return nil, errors.Join(errors.New("ask the serving host: unreadable report"), err)
	}
	return &r, nil
}
