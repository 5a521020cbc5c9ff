// Package demopages is the page handler of the web test pack: the host's
// proxy tests and benchmarks serve it through a real pack process and,
// for comparison, straight from net/http.
package demopages

import (
	"context"
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

	"github.com/coder/websocket"

	"github.com/packhost/packhost/plugins/sdk"
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

// TrailerBody is the body of /web/trailers.
const TrailerBody = "a body followed by trailers\n"

// EchoMessages sends every message read from c back, until c or ctx ends.
func EchoMessages(ctx context.Context, c *websocket.Conn) {
	for {
		typ, data, err := c.Read(ctx)
		if err != nil {
			return
		}
		if err := c.Write(ctx, typ, data); err != nil {
			return
		}
	}
}

// writeMark writes a mark whole or not at all (a test waiting for the file
// must not read it half written).
func writeMark(path, text string) {
	if err := os.WriteFile(path+".partial", []byte(text), 0o644); err == nil {
		os.Rename(path+".partial", path)
	}
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
	// /web/stream?chunks=N&size=S[&delay=MS] reads the request body, then
	// writes N chunks of S bytes, flushing after each and waiting MS
	// milliseconds between them; chunk i is filled with the byte 'a'+i%26.
	mux.HandleFunc("/web/stream", func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		chunks, _ := strconv.Atoi(r.URL.Query().Get("chunks"))
		size, _ := strconv.Atoi(r.URL.Query().Get("size"))
		delay, _ := strconv.Atoi(r.URL.Query().Get("delay"))
		w.Header().Set("Content-Type", "application/octet-stream")
		for i := 0; i < chunks; i++ {
			if i > 0 && delay > 0 {
				time.Sleep(time.Duration(delay) * time.Millisecond)
			}
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
			writeMark(filepath.Join(markDir, "cancelled-"+r.URL.Query().Get("id")), r.Context().Err().Error())
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
	// /web/panic-late panics after its answer started.
	mux.HandleFunc("GET /web/panic-late", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "the answer starts")
		http.NewResponseController(w).Flush()
		panic("the test pack panics on purpose, late")
	})
	// /web/upload?id=ID reads the whole body, then leaves a mark saying
	// how that went: "read N bytes" or "failed after N bytes: ERROR".
	mux.HandleFunc("/web/upload", func(w http.ResponseWriter, r *http.Request) {
		n, err := io.Copy(io.Discard, r.Body)
		outcome := fmt.Sprintf("read %d bytes", n)
		if err != nil {
			outcome = fmt.Sprintf("failed after %d bytes: %v", n, err)
		}
		if markDir != "" {
			writeMark(filepath.Join(markDir, "upload-"+r.URL.Query().Get("id")), outcome)
		}
		io.WriteString(w, outcome+"\n")
	})
	// /web/trailers answers a body and the trailers X-Sum and X-Count.
	mux.HandleFunc("GET /web/trailers", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Trailer", "X-Sum, X-Count")
		w.Header().Set("Content-Type", "text/plain")
		io.WriteString(w, TrailerBody)
		sum := sha256.Sum256([]byte(TrailerBody))
		w.Header().Set("X-Sum", hex.EncodeToString(sum[:]))
		w.Header().Set("X-Count", strconv.Itoa(len(TrailerBody)))
	})
	// /web/cookies?set=LINE&set=LINE answers with each LINE as a
	// Set-Cookie header.
	mux.HandleFunc("GET /web/cookies", func(w http.ResponseWriter, r *http.Request) {
		for _, line := range r.URL.Query()["set"] {
			w.Header().Add("Set-Cookie", line)
		}
		io.WriteString(w, "cookies set\n")
	})
	// /web/db asks the pack's database through the request's context.
	mux.HandleFunc("GET /web/db", func(w http.ResponseWriter, r *http.Request) {
		db, err := sdk.DB(r.Context())
		if err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		var n int
		if err := db.Raw("SELECT 1 + 1").Scan(&n).Error; err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		fmt.Fprintf(w, "the database says %d\n", n)
	})
	// /web/ws echoes every WebSocket message back.
	mux.HandleFunc("GET /web/ws", func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		EchoMessages(r.Context(), c)
	})
	return mux
}
