package web

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/packhost/packhost/host/web/internal/demopages"
)

// The web benchmarks (bench/web.sh, `make bench`) compare pack pages
// served through the host (its HTTP server, the reverse proxy, the pack's
// own net/http server on its unix socket) with the same handler
// (demopages) served straight by net/http, in the same run, and report
// min-max over rounds. BENCH_SECONDS sets each measurement's length
// (default 5), BENCH_ROUNDS the rounds (default 3).

func benchEnv(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// wrkRate runs Debian's wrk against url for the given time and returns
// its requests per second; script, when not empty, is a wrk Lua script.
func wrkRate(b *testing.B, url, script string, seconds int) float64 {
	b.Helper()
	args := []string{"-t1", "-c32", fmt.Sprintf("-d%ds", seconds), "--timeout", "10s"}
	if script != "" {
		args = append(args, "-s", script)
	}
	out, err := exec.Command("wrk", append(args, url)...).CombinedOutput()
	if err != nil {
		b.Fatalf("wrk %s: %v\n%s", url, err, out)
	}
	if bytes.Contains(out, []byte("Non-2xx or 3xx responses")) || bytes.Contains(out, []byte("Socket errors")) {
		b.Fatalf("wrk %s saw failed requests:\n%s", url, out)
	}
	m := regexp.MustCompile(`Requests/sec:\s+([0-9.]+)`).FindSubmatch(out)
	if m == nil {
		b.Fatalf("wrk %s: no Requests/sec in\n%s", url, out)
	}
	rate, _ := strconv.ParseFloat(string(m[1]), 64)
	return rate
}

// serveOn serves h with the host's http.Server settings on a loopback
// port until the benchmark ends.
func serveOn(b *testing.B, s *Server, h http.Handler) string {
	b.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := s.httpServer(h)
	go srv.Serve(ln)
	b.Cleanup(func() { srv.Close() })
	return "http://" + ln.Addr().String()
}

type span struct{ min, max float64 }

func (s *span) add(v float64) {
	if s.min == 0 || v < s.min {
		s.min = v
	}
	s.max = max(s.max, v)
}

func (s span) String() string { return fmt.Sprintf("%.0f-%.0f", s.min, s.max) }

func ratioString(r []float64) string {
	return fmt.Sprintf("%.2f-%.2f", slices.Min(r), slices.Max(r))
}

// BenchmarkPackPage measures requests per second with wrk (one thread, 32
// connections) to GET /web/hello and to POST /web/echo with a 1 KiB body:
// straight from net/http, through the host, and through the host with its
// request limits (body size limit, body read deadline) turned off. The
// rounds rotate the order of the three.
func BenchmarkPackPage(b *testing.B) {
	if _, err := exec.LookPath("wrk"); err != nil {
		b.Skip("wrk is not installed (apt-get install wrk; bench/web.sh does)")
	}
	seconds, rounds := benchEnv("BENCH_SECONDS", 5), benchEnv("BENCH_ROUNDS", 3)
	direct := httptest.NewServer(demopages.Handler(""))
	defer direct.Close()
	s, _ := newServer(b, Config{})
	host := serveOn(b, s, s.Handler())
	bare, _ := newServer(b, Config{})
	bare.noLimits = true
	hostBare := serveOn(b, bare, bare.Handler())

	post := filepath.Join(b.TempDir(), "post.lua")
	if err := os.WriteFile(post, []byte(`wrk.method = "POST"
wrk.body = string.rep("x", 1024)
wrk.headers["Content-Type"] = "application/octet-stream"
`), 0o644); err != nil {
		b.Fatal(err)
	}
	type load struct {
		name, path, script string
	}
	loads := []load{{"GET /web/hello", "/web/hello", ""}, {"POST /web/echo 1KiB", "/web/echo", post}}
	targets := []struct{ name, base string }{{"direct", direct.URL}, {"host", host}, {"host, no limits", hostBare}}

	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for _, l := range loads {
			rates := map[string]*span{}
			var ratio, limitCost []float64
			for r := 0; r < rounds; r++ {
				got := map[string]float64{}
				for k := range targets {
					t := targets[(k+r)%len(targets)]
					got[t.name] = wrkRate(b, t.base+l.path, l.script, seconds)
					if rates[t.name] == nil {
						rates[t.name] = &span{}
					}
					rates[t.name].add(got[t.name])
				}
				ratio = append(ratio, got["host"]/got["direct"])
				limitCost = append(limitCost, got["host"]/got["host, no limits"])
				b.Logf("%s round %d: direct %.0f req/s, host %.0f req/s, host without limits %.0f req/s",
					l.name, r+1, got["direct"], got["host"], got["host, no limits"])
			}
			b.Logf("%s: direct %s req/s, host %s req/s, host without limits %s req/s; host/direct %s (target >= 0.6); with/without limits %s",
				l.name, rates["direct"], rates["host"], rates["host, no limits"], ratioString(ratio), ratioString(limitCost))
			key := strings.Fields(l.name)[0]
			b.ReportMetric(slices.Min(ratio), key+"_host/direct_min")
			b.ReportMetric(slices.Max(ratio), key+"_host/direct_max")
			b.ReportMetric(slices.Min(limitCost), key+"_limits/none_min")
			b.ReportMetric(slices.Max(limitCost), key+"_limits/none_max")
		}
	}
}

// BenchmarkWebSocketEcho measures WebSocket round trips per second (16
// connections, each sending a 64-byte message and waiting for its echo)
// through the host against the same echo served straight by net/http.
func BenchmarkWebSocketEcho(b *testing.B) {
	seconds, rounds := benchEnv("BENCH_SECONDS", 5), benchEnv("BENCH_ROUNDS", 3)
	direct := httptest.NewServer(demopages.Handler(""))
	defer direct.Close()
	s, _ := newServer(b, Config{})
	host := serveOn(b, s, s.Handler())

	echo := func(base string) float64 {
		const conns = 16
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		var trips atomic.Int64
		var failed atomic.Value
		var wg sync.WaitGroup
		cs := make([]*websocket.Conn, conns)
		for i := range cs {
			c, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(base, "http")+"/web/ws", nil)
			if err != nil {
				b.Fatalf("dial %s: %v", base, err)
			}
			cs[i] = c
		}
		msg := bytes.Repeat([]byte("m"), 64)
		deadline := time.Now().Add(time.Duration(seconds) * time.Second)
		start := time.Now()
		for _, c := range cs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.CloseNow()
				for time.Now().Before(deadline) {
					if err := c.Write(ctx, websocket.MessageBinary, msg); err != nil {
						failed.Store(err)
						return
					}
					if _, got, err := c.Read(ctx); err != nil || !bytes.Equal(got, msg) {
						failed.Store(fmt.Errorf("read %q: %v", got, err))
						return
					}
					trips.Add(1)
				}
			}()
		}
		wg.Wait()
		if v := failed.Load(); v != nil {
			b.Fatalf("echo through %s: %v", base, v)
		}
		return float64(trips.Load()) / time.Since(start).Seconds()
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		var d, h span
		var ratio []float64
		for r := 0; r < rounds; r++ {
			var dr, hr float64
			if r%2 == 0 {
				dr, hr = echo(direct.URL), echo(host)
			} else {
				hr, dr = echo(host), echo(direct.URL)
			}
			d.add(dr)
			h.add(hr)
			ratio = append(ratio, hr/dr)
			b.Logf("WebSocket echo round %d: direct %.0f round trips/s, host %.0f round trips/s", r+1, dr, hr)
		}
		b.Logf("WebSocket echo: direct %s round trips/s, host %s round trips/s; host/direct %s", d, h, ratioString(ratio))
		b.ReportMetric(slices.Min(ratio), "ws_host/direct_min")
		b.ReportMetric(slices.Max(ratio), "ws_host/direct_max")
	}
}
