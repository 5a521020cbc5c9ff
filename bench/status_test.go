// Package bench holds benchmarks that span the whole host; bench/run.sh
// runs them and writes their figures to bench/results/.
package bench

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"

	"github.com/packhost/packhost/host/report"
	"github.com/packhost/packhost/host/system"
	"github.com/packhost/packhost/host/upgrade"
	"github.com/packhost/packhost/internal/packtest"
)

func TestMain(m *testing.M) { packtest.Main(m) }

// statusSystem installs the core pack and n-1 copies of the notes test pack,
// each built with its own id (bench01, bench02...) and so its own table,
// and upgrades the embedded SQLite database so that every table is ok and
// CheckSchema compares real schemas.
func statusSystem(b *testing.B, n int) string {
	b.Helper()
	root := packtest.NewRoot(b)
	packtest.Install(b, root, packtest.Build(b, "plugins/core", nil))
	for i := 1; i < n; i++ {
		packtest.Install(b, root, packtest.Build(b, "testdata/packs/notes", map[string]string{"id": fmt.Sprintf("bench%02d", i)}))
	}
	ctx := context.Background()
	sys, err := system.Open(ctx, system.Options{Root: root})
	if err != nil {
		b.Fatal(err)
	}
	defer sys.Close()
	if len(sys.Failed) > 0 {
		b.Fatalf("packs did not start: %v", sys.Failed)
	}
	r, err := sys.Report(ctx)
	if err != nil {
		b.Fatal(err)
	}
	if err := upgrade.Packs(ctx, sys.Packs, upgrade.Needed(r), nil, nil); err != nil {
		b.Fatal(err)
	}
	return root
}

// BenchmarkStatus times `host status` with 1, 10 and 20 installed packs
// against its floor, exec'ing as many hello-world Go binaries in parallel:
// cold (no host serves: status starts every pack, Describe, CheckSchema on
// an upgraded database), first with no verified-binary cache and then with
// the one a host run left, and against a serving host (status asks it;
// its running packs check their schemas afresh).
func BenchmarkStatus(b *testing.B) {
	host := packtest.Host(b)
	hello := packtest.Build(b, "testdata/bench/hello", nil)
	for _, n := range []int{1, 10, 20} {
		root := statusSystem(b, n)
		status := func(b *testing.B) {
			cmd := exec.Command(host, "status", "--root", root)
			out, err := cmd.CombinedOutput()
			if err != nil {
				b.Fatalf("host status: %v\n%s", err, out)
			}
		}
		b.Run(fmt.Sprintf("packs=%02d/host_status", n), func(b *testing.B) {
			// The first run must find every table ok (exit 0): the
			// database was upgraded, so CheckSchema did real work.
			cmd := exec.Command(host, "status", "--json", "--root", root)
			out, err := cmd.Output()
			if err != nil || !containsExit(out, report.ExitOK) {
				b.Fatalf("host status: %v\n%s", err, out)
			}
			for b.Loop() {
				status(b)
			}
		})
		h := packtest.StartHost(b, "--root", root)
		b.Run(fmt.Sprintf("packs=%02d/host_status_serving", n), func(b *testing.B) {
			cmd := exec.Command(host, "status", "--json", "--root", root)
			out, err := cmd.Output()
			if err != nil || !containsExit(out, report.ExitOK) {
				b.Fatalf("host status: %v\n%s", err, out)
			}
			for b.Loop() {
				status(b)
			}
		})
		if code := h.Stop(b); code != 0 {
			b.Fatalf("host run exited %d:\n%s", code, h.Log())
		}
		b.Run(fmt.Sprintf("packs=%02d/host_status_cached", n), func(b *testing.B) {
			for b.Loop() {
				status(b)
			}
		})
		b.Run(fmt.Sprintf("packs=%02d/floor", n), func(b *testing.B) {
			for b.Loop() {
				var wg sync.WaitGroup
				errs := make(chan error, n)
				for range n {
					wg.Add(1)
					go func() {
						defer wg.Done()
						if err := exec.Command(hello).Run(); err != nil {
							errs <- err
						}
					}()
				}
				wg.Wait()
				close(errs)
				for err := range errs {
					b.Fatal(err)
				}
			}
		})
		_ = os.RemoveAll(root)
	}
}

func containsExit(out []byte, code int) bool {
	return strings.Contains(string(out), fmt.Sprintf(`"exit_code": %d`, code))
}
