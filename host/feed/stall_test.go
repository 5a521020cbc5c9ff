package feed

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestAStalledOrTricklingServerCannotHoldAFetch serves the feed, or a zip,
// with headers and then nothing, or a byte at a time: the fetch ends
// within its guards, says the server stalled, and keeps nothing.
func TestAStalledOrTricklingServerCannotHoldAFetch(t *testing.T) {
	z := testZip(t, "notes", "1.2.0")
	for _, tc := range []struct {
		name  string
		path  string
		serve func(w http.ResponseWriter, r *http.Request, done <-chan struct{})
		want  string
	}{
		{"a feed that sends its headers and then nothing", "/feed.json", func(w http.ResponseWriter, r *http.Request, done <-chan struct{}) {
			w.Header().Set("Content-Length", "1000")
			w.WriteHeader(http.StatusOK)
			w.(http.Flusher).Flush()
			select {
			case <-done:
			case <-r.Context().Done():
			}
		}, "nothing arrived for"},
		{"a zip that trickles a byte at a time", "/zips/notes-1.2.0.zip", func(w http.ResponseWriter, r *http.Request, done <-chan struct{}) {
			w.Header().Set("Content-Length", strconv.Itoa(len(z)))
			w.WriteHeader(http.StatusOK)
			for i := 0; ; i++ {
				if _, err := w.Write([]byte{'x'}); err != nil {
					return
				}
				w.(http.Flusher).Flush()
				select {
				case <-done:
					return
				case <-r.Context().Done():
					return
				case <-time.After(100 * time.Millisecond):
				}
			}
		}, "less than 1024 bytes a second"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := newRoot(t)
			p := newPublisher(t)
			p.publish(1, future(), p.entry("notes", "1.2.0", z))
			done := make(chan struct{})
			defer close(done)
			p.handle = func(w http.ResponseWriter, r *http.Request) bool {
				if r.URL.Path != tc.path {
					return false
				}
				tc.serve(w, r, done)
				return true
			}
			f := p.fetcher(root)
			f.Attempts, f.IdleTimeout, f.RateGrace = 2, 500*time.Millisecond, time.Second
			start := time.Now()
			_, err := f.Fetch(context.Background())
			if took := time.Since(start); took > 15*time.Second {
				t.Errorf("the fetch took %s", took)
			}
			if err == nil || !errors.Is(err, ErrStalled) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want the server stalled (%s)", err, tc.want)
			}
			if names := pendingFiles(t, root); len(names) != 0 {
				t.Errorf("Updates_Pending holds %v", names)
			}
		})
	}
}

func TestAFeedThatExpiresTooFarAheadIsRefused(t *testing.T) {
	root := newRoot(t)
	p := newPublisher(t)
	p.publish(1, time.Date(9999, 12, 31, 0, 0, 0, 0, time.UTC))
	_, err := p.fetcher(root).Check(context.Background())
	if err == nil || !errors.Is(err, ErrInvalidFeed) || !strings.Contains(err.Error(), "further ahead than the 744h0m0s") {
		t.Fatalf("err = %v, want the year-9999 expiry refused", err)
	}
	if _, ok := LastVerified(root, p.srv.URL+"/feed.json"); ok {
		t.Error("a refused feed counts as verified")
	}
	p.publish(2, time.Now().Add(30*24*time.Hour))
	if _, err := p.fetcher(root).Check(context.Background()); err != nil {
		t.Fatalf("a feed expiring in 30 days: %v", err)
	}
}

func TestEachSuccessfulCheckRecordsWhenTheFeedLastVerified(t *testing.T) {
	root := newRoot(t)
	p := newPublisher(t)
	p.publish(2, future())
	url := p.srv.URL + "/feed.json"
	f := p.fetcher(root)
	at := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	f.Now = func() time.Time { return at }
	if _, err := f.Check(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got, ok := LastVerified(root, url); !ok || !got.Equal(at) {
		t.Fatalf("last verified %v %v, want %v", got, ok, at)
	}
	// The same feed again, later: verified again, though nothing is new.
	at = at.Add(6 * time.Hour)
	if _, err := f.Check(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got, _ := LastVerified(root, url); !got.Equal(at) {
		t.Fatalf("last verified %v, want %v", got, at)
	}
	// A replayed, older feed is refused and does not count.
	p.publish(1, future())
	at = at.Add(6 * time.Hour)
	if _, err := f.Check(context.Background()); !errors.Is(err, ErrReplayed) {
		t.Fatalf("err = %v, want a replay", err)
	}
	if got, _ := LastVerified(root, url); !got.Equal(at.Add(-6 * time.Hour)) {
		t.Fatalf("a refused check moved last verified to %v", got)
	}
}
