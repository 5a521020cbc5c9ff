// Package demopages is the page handler of the web test pack: the host's
// proxy tests and benchmarks serve it through a real pack process and,
// for comparison, straight from net/http.
package demopages

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"time"
)

// Prefix is where the pages live.
const Prefix = "/web/"

// Hello is the body of /web/hello.
const Hello = "hello from a pack\n"

// Echo is what /web/echo answers, as JSON.
type Echo struct {
	Method     string              `json:"method"`
	Path       string              `json:"path"`
	Query      string              `json:"query"`
	Host       string              `json:"host"`
	RemoteAddr string              `json:"remote_addr"`
	Header     map[string][]string `json:"header"`
	BodyLen    int64               `json:"body_len"`
	BodySHA256 string              `json:"body_sha256"`
}

// Handler serves the test pages. markDir, when not empty, is where /wait
// writes a file once its request's context ends.
func Handler(markDir string) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /web/hello", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		io.WriteString(w, Hello)
	})
	mux.HandleFunc("/web/echo", func(w http.ResponseWriter, r *http.Request) {
		h := sha256.New()
		n, err := io.Copy(h, r.Body)
		if err != nil {
			http.Error(w, "read body: "+err.Error(), http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Pack", "web")
		w.WriteHeader(http.StatusCreated)
		json.NewEncoder(w).Encode(Echo{
			Method: r.Method, Path: r.URL.Path, Query: r.URL.RawQuery, Host: r.Host, RemoteAddr: r.RemoteAddr,
			Header: r.Header, BodyLen: n, BodySHA256: hex.EncodeToString(h.Sum(nil)),
		})
	})
	// /web/stream?chunks=N&size=S writes N chunks of S bytes, flushing
	// after each; chunk i is filled with the byte 'a'+i%26.
	mux.HandleFunc("GET /web/stream", func(w http.ResponseWriter, r *http.Request) {
		chunks, _ := strconv.Atoi(r.URL.Query().Get("chunks"))
		size, _ := strconv.Atoi(r.URL.Query().Get("size"))
		w.Header().Set("Content-Type", "application/octet-stream")
		for i := 0; i < chunks; i++ {
			b := make([]byte, size)
			for j := range b {
				b[j] = byte('a' + i%26)
			}
			if _, err := w.Write(b); err != nil {
				return
			}
			http.NewResponseController(w).Flush()
		}
	})
	// /web/wait blocks until the request is cancelled, then leaves a mark.
	mux.HandleFunc("GET /web/wait", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		w.WriteHeader(http.StatusOK)
		io.WriteString(w, "waiting\n")
		http.NewResponseController(w).Flush()
		<-r.Context().Done()
		if markDir != "" {
			os.WriteFile(filepath.Join(markDir, "cancelled-"+r.URL.Query().Get("id")), []byte(r.Context().Err().Error()), 0o644)
		}
	})
	// /web/slow?ms=N answers after N milliseconds.
	mux.HandleFunc("GET /web/slow", func(w http.ResponseWriter, r *http.Request) {
		ms, _ := strconv.Atoi(r.URL.Query().Get("ms"))
		select {
		case <-time.After(time.Duration(ms) * time.Millisecond):
			fmt.Fprintf(w, "slept %dms\n", ms)
		case <-r.Context().Done():
		}
	})
	mux.HandleFunc("GET /web/panic", func(w http.ResponseWriter, r *http.Request) {
		panic("the test pack panics on purpose")
	})
	return mux
}
