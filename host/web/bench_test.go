package web

import (
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/packhost/packhost/host/web/internal/demopages"
)

// BenchmarkPackPage measures requests per second to /web/hello through the
// host (HTTP server, ServeHTTP stream, pack process) against the same
// handler served straight by net/http, both on loopback, in the same run.
// It reports direct_req/s, host_req/s and host/direct (the ratio).
func BenchmarkPackPage(b *testing.B) {
	direct := httptest.NewServer(demopages.Handler(""))
	defer direct.Close()
	_, host := newServer(b, Config{})
	const workers = 32
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: workers, MaxIdleConns: 4 * workers}}
	defer client.CloseIdleConnections()

	run := func(base string) float64 {
		var next atomic.Int64
		var failed atomic.Value
		var wg sync.WaitGroup
		start := time.Now()
		for w := 0; w < workers; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for next.Add(1) <= int64(b.N) {
					resp, err := client.Get(base + "/web/hello")
					if err != nil {
						failed.Store(err)
						return
					}
					body, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					if resp.StatusCode != 200 || string(body) != demopages.Hello {
						failed.Store(resp.Status)
						return
					}
				}
			}()
		}
		wg.Wait()
		if v := failed.Load(); v != nil {
			b.Fatalf("request to %s failed: %v", base, v)
		}
		return float64(b.N) / time.Since(start).Seconds()
	}
	// Warm both paths (connections, the pack's stream machinery).
	for _, base := range []string{direct.URL, host.URL} {
		resp, err := client.Get(base + "/web/hello")
		if err != nil {
			b.Fatal(err)
		}
		resp.Body.Close()
	}
	b.ResetTimer()
	d := run(direct.URL)
	h := run(host.URL)
	b.StopTimer()
	b.ReportMetric(d, "direct_req/s")
	b.ReportMetric(h, "host_req/s")
	b.ReportMetric(h/d, "host/direct")
}
