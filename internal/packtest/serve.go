package packtest

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Serving is a `host run` started by StartHost.
type Serving struct {
	Cmd *exec.Cmd
	// URL is where it serves, such as http://127.0.0.1:40123.
	URL  string
	mu   sync.Mutex
	out  bytes.Buffer
	done chan struct{}
	code int
}

var servingAddr = regexp.MustCompile(`serving: addr=(http://[^ /]+)`)

// StartHost runs `host run` with args (--addr 127.0.0.1:0 is added) and
// waits until it serves. The process is killed at the end of the test if
// it still runs.
func StartHost(t testing.TB, args ...string) *Serving {
	t.Helper()
	cmd := exec.Command(Host(t), append([]string{"run", "--addr", "127.0.0.1:0"}, args...)...)
	pipe, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	s := &Serving{Cmd: cmd, done: make(chan struct{})}
	cmd.Stdout = &lockedWriter{s}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	serving := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(pipe)
		for sc.Scan() {
			s.mu.Lock()
			s.out.WriteString(sc.Text() + "\n")
			s.mu.Unlock()
			if m := servingAddr.FindStringSubmatch(sc.Text()); m != nil {
				select {
				case serving <- m[1]:
				default:
				}
			}
		}
		_, _ = io.Copy(io.Discard, pipe)
		err := cmd.Wait()
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			s.code = exit.ExitCode()
			if ws, ok := exit.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
				s.code = -int(ws.Signal())
			}
		}
		close(s.done)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-s.done
	})
	select {
	case s.URL = <-serving:
	case <-s.done:
		t.Fatalf("host run exited %d before serving:\n%s", s.code, s.Log())
	case <-time.After(2 * time.Minute):
		t.Fatalf("host run does not serve:\n%s", s.Log())
	}
	return s
}

type lockedWriter struct{ s *Serving }

func (w *lockedWriter) Write(p []byte) (int, error) {
	w.s.mu.Lock()
	defer w.s.mu.Unlock()
	return w.s.out.Write(p)
}

// Log is what the host printed so far, stdout and stderr.
func (s *Serving) Log() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.out.String()
}

// Stop sends SIGTERM and waits for the host to exit; it returns the exit
// code.
func (s *Serving) Stop(t testing.TB) int {
	t.Helper()
	_ = s.Cmd.Process.Signal(syscall.SIGTERM)
	return s.Wait(t, time.Minute)
}

// Wait waits up to d for the host to exit and returns its exit code
// (minus the signal number when a signal ended it).
func (s *Serving) Wait(t testing.TB, d time.Duration) int {
	t.Helper()
	select {
	case <-s.done:
		return s.code
	case <-time.After(d):
		t.Fatalf("host run did not exit within %s:\n%s", d, s.Log())
	}
	return 0
}

// Contains reports whether the host printed sub.
func (s *Serving) Contains(sub string) bool { return strings.Contains(s.Log(), sub) }
