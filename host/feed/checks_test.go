package feed

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/packhost/packhost/host/progress"
)

func TestAZipThatIsNotTheEntrysPackAndVersionIsRefused(t *testing.T) {
	cases := []struct {
		name    string
		content []byte
		want    string
	}{
		{"a zip of another pack", testZip(t, "other", "1.2.0"),
			"notes-1.2.0.zip: the zip is not what the feed lists: the feed lists pack notes version 1.2.0, the zip's pack.json says pack other version 1.2.0; the download was deleted and nothing was added to Updates_Pending"},
		{"a zip of another version", testZip(t, "notes", "1.1.0"),
			"the feed lists pack notes version 1.2.0, the zip's pack.json says pack notes version 1.1.0"},
		{"a file that is not a zip", []byte("this is not a zip at all"),
			"notes-1.2.0.zip: the zip is not what the feed lists: its pack.json cannot be read (not a zip file, or truncated"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			root := newRoot(t)
			p := newPublisher(t)
			p.trust(t, root)
			e := p.entry("notes", "1.2.0", c.content) // size and sha256 match the content
			e.URL = "zips/a"
			p.zips["a"] = c.content
			p.publish(1, future(), e)
			res, err := p.fetcher(root).Fetch(context.Background())
			if err == nil || !errors.Is(err, ErrNotAsListed) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err %v, want %q", err, c.want)
			}
			if res.Updates[0].State != StateFailed {
				t.Fatalf("state %s", res.Updates[0].State)
			}
			if names := pendingFiles(t, root); len(names) != 0 {
				t.Fatalf("Updates_Pending holds %v", names)
			}
			if n := p.hits["/zips/a"].Load(); n != 1 {
				t.Fatalf("the zip was asked for %d times; a wrong zip is not retried", n)
			}
		})
	}
}

// mirror serves the publisher's current feed, signature and zips also
// under /mirror/, and returns the mirrored feed's URL.
func (p *publisher) mirror() string {
	p.handle = func(w http.ResponseWriter, r *http.Request) bool {
		switch r.URL.Path {
		case "/mirror/feed.json":
			w.Write(p.feed)
		case "/mirror/feed.json.sig":
			w.Write(p.sig)
		default:
			r.URL.Path = strings.TrimPrefix(r.URL.Path, "/mirror") // the zips
			return false
		}
		return true
	}
	return p.srv.URL + "/mirror/feed.json"
}

func TestASignedFeedsSequenceFollowsItsKeyNotItsURL(t *testing.T) {
	z := testZip(t, "notes", "1.2.0")
	t.Run("an older signed feed from another URL is refused", func(t *testing.T) {
		root := newRoot(t)
		p := newPublisher(t)
		p.trust(t, root)
		p.publish(10, future())
		first := p.fetcher(root)
		if _, err := first.Check(context.Background()); err != nil {
			t.Fatal(err)
		}
		p.publish(9, future(), p.entry("notes", "1.2.0", z))
		f := p.fetcher(root)
		f.URL = p.mirror()
		before, _ := os.ReadFile(filepath.Join(root, DataDir, StateFile))
		_, err := f.Fetch(context.Background())
		want := "sequence 9, but 10 was seen on "
		if err == nil || !errors.Is(err, ErrReplayed) || !strings.Contains(err.Error(), want) ||
			!strings.Contains(err.Error(), "from "+first.URL+", signed by the same key (publisher)") {
			t.Fatalf("err %v, want %q", err, want)
		}
		after, _ := os.ReadFile(filepath.Join(root, DataDir, StateFile))
		if names := pendingFiles(t, root); len(names) != 0 || !bytes.Equal(before, after) {
			t.Fatalf("Updates_Pending holds %v; state %s -> %s", names, before, after)
		}
	})
	t.Run("renaming the key file does not reset it either", func(t *testing.T) {
		root := newRoot(t)
		p := newPublisher(t)
		p.trust(t, root)
		p.publish(10, future())
		if _, err := p.fetcher(root).Check(context.Background()); err != nil {
			t.Fatal(err)
		}
		keys := filepath.Join(root, "trusted_keys")
		if err := os.Rename(filepath.Join(keys, "publisher.pub"), filepath.Join(keys, "renamed.pub")); err != nil {
			t.Fatal(err)
		}
		p.publish(10, future(), p.entry("notes", "1.2.0", z))
		f := p.fetcher(root)
		f.URL = p.mirror()
		_, err := f.Fetch(context.Background())
		if err == nil || !errors.Is(err, ErrReplayed) || !strings.Contains(err.Error(), "sequence 10 was seen before with other content") {
			t.Fatalf("err %v", err)
		}
	})
	t.Run("a state kept per URL by an earlier host still counts for that URL", func(t *testing.T) {
		root := newRoot(t)
		p := newPublisher(t)
		p.trust(t, root)
		url := p.fetcher(root).URL
		old := `{"feeds": {"` + url + `": {"sequence": 10, "sha256": "00", "seen_at": "2026-01-01T00:00:00Z"}}}`
		if err := os.WriteFile(filepath.Join(root, DataDir, StateFile), []byte(old), 0o644); err != nil {
			t.Fatal(err)
		}
		p.publish(9, future(), p.entry("notes", "1.2.0", z))
		_, err := p.fetcher(root).Fetch(context.Background())
		if err == nil || !errors.Is(err, ErrReplayed) || !strings.Contains(err.Error(), "sequence 9, but 10 was seen on 2026-01-01T00:00:00Z") {
			t.Fatalf("err %v", err)
		}
		if names := pendingFiles(t, root); len(names) != 0 {
			t.Fatalf("Updates_Pending holds %v", names)
		}
	})
	t.Run("without trusted keys each URL keeps its own count", func(t *testing.T) {
		root := newRoot(t)
		p := newPublisher(t)
		p.publish(10, future())
		if _, err := p.fetcher(root).Check(context.Background()); err != nil {
			t.Fatal(err)
		}
		p.publish(9, future(), p.entry("notes", "1.2.0", z))
		f := p.fetcher(root)
		f.URL = p.mirror()
		res, err := f.Fetch(context.Background())
		if err != nil || res.Updates[0].State != StateDownloaded {
			t.Fatalf("unsigned feed from a second URL: %+v, %v", res, err)
		}
		if _, err := p.fetcher(root).Check(context.Background()); err == nil || !errors.Is(err, ErrReplayed) {
			t.Fatalf("the first URL forgot its sequence: %v", err)
		}
	})
}

func TestAFetchRemovesTheTemporaryFilesOfAKilledFetch(t *testing.T) {
	root := newRoot(t)
	dir := filepath.Join(root, PendingDir)
	hourAgo, inAnHour := time.Now().Add(-time.Hour), time.Now().Add(time.Hour)
	files := []struct {
		name string
		at   time.Time
		kept bool
	}{
		{".notes-1.2.0.zip.1234567.part", hourAgo, false},
		{".core-2.0.0-rc.1.zip.42.part", hourAgo, false},
		{".notes-1.3.0.zip.99.part", inAnHour, true}, // newer than this run: someone else's
		{"notes.part", hourAgo, true},                // not a name a fetch makes
		{".notes-1.2.0.zip.x1.part", hourAgo, true},
		{".system-123.zip.tmp", hourAgo, true},
	}
	for _, f := range files {
		path := filepath.Join(dir, f.name)
		if err := os.WriteFile(path, []byte("partial"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(path, f.at, f.at); err != nil {
			t.Fatal(err)
		}
	}
	p := newPublisher(t)
	p.publish(1, future())
	if _, err := p.fetcher(root).Fetch(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		_, err := os.Stat(filepath.Join(dir, f.name))
		if kept := err == nil; kept != f.kept {
			t.Errorf("%s: kept %v, want %v", f.name, kept, f.kept)
		}
	}
	// A check alone downloads nothing and removes nothing.
	stale := filepath.Join(dir, ".notes-1.2.0.zip.7.part")
	os.WriteFile(stale, []byte("partial"), 0o644)
	os.Chtimes(stale, hourAgo, hourAgo)
	if _, err := p.fetcher(root).Check(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(stale); err != nil {
		t.Fatalf("Check removed %s: %v", stale, err)
	}
}

func TestDownloadsReportThroughTheProgressReporter(t *testing.T) {
	root := newRoot(t)
	p := newPublisher(t)
	z := testZip(t, "notes", "1.2.0")
	p.publish(1, future(), p.entry("notes", "1.2.0", z), p.entry("other", "1.0.0", []byte("not a zip")))
	var out, logs bytes.Buffer // not a terminal: the reporter logs
	f := p.fetcher(root)
	f.Progress = progress.New(&out, hclog.New(&hclog.LoggerOptions{Output: &logs, Level: hclog.Info}))
	_, err := f.Fetch(context.Background())
	if err == nil {
		t.Fatal("a download that is not a zip passed")
	}
	for _, want := range []string{
		"notes-1.2.0.zip: done=" + strconv.Itoa(len(z)) + " of=" + strconv.Itoa(len(z)) + " now=downloading",
		`notes-1.2.0.zip: done="downloaded into Updates_Pending"`,
		`other-1.0.0.zip: done="failed; nothing was kept"`,
	} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("the log lacks %q:\n%s", want, logs.String())
		}
	}
	if out.Len() != 0 {
		t.Errorf("a reporter that is not on a terminal drew %q", out.String())
	}
}

func TestAFeedStateThatCannotBeWrittenIsReportedAndLeftAsItWas(t *testing.T) {
	z := testZip(t, "notes", "1.2.0")
	root := newRoot(t)
	p := newPublisher(t)
	p.trust(t, root)
	p.publish(10, future())
	if _, err := p.fetcher(root).Check(context.Background()); err != nil {
		t.Fatal(err)
	}
	statePath := filepath.Join(root, DataDir, StateFile)
	// The state of another feed besides makes the state file larger than
	// the fetch lock's small holder file.
	var st map[string]map[string]any
	b, err := os.ReadFile(statePath)
	if err != nil || json.Unmarshal(b, &st) != nil {
		t.Fatalf("feed state %s: %v", b, err)
	}
	st["feeds"]["https://mirror.example/"+strings.Repeat("x", 600)+"/feed.json"] = map[string]any{"sequence": 1, "sha256": strings.Repeat("0", 64)}
	before, _ := json.MarshalIndent(st, "", "  ")
	if err := os.WriteFile(statePath, before, 0o600); err != nil {
		t.Fatal(err)
	}
	p.publish(11, future(), p.entry("notes", "1.2.0", z))
	// A file size limit below the state's size makes the write of the new
	// state fail part-way (EFBIG; Go ignores SIGXFSZ), as a full disk would.
	// The limit is the process's: this test does not run in parallel.
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_FSIZE, &lim); err != nil {
		t.Fatal(err)
	}
	small := lim
	small.Cur = 512
	if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &small); err != nil {
		t.Fatal(err)
	}
	_, err = p.fetcher(root).Fetch(context.Background())
	if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &lim); err != nil {
		t.Fatal(err)
	}
	if err == nil || !strings.Contains(err.Error(), "write feed state: ") || !errors.Is(err, syscall.EFBIG) {
		t.Fatalf("err %v, want the failed write of the feed state", err)
	}
	after, _ := os.ReadFile(statePath)
	if !bytes.Equal(before, after) {
		t.Fatalf("feed state %s -> %s", before, after)
	}
	if entries, _ := os.ReadDir(filepath.Dir(statePath)); len(entries) != 2 || entries[0].Name() != StateFile || entries[1].Name() != "locks" {
		t.Fatalf("%s holds %v, want only %s (and the system's locks)", DataDir, entries, StateFile)
	}
	if names := pendingFiles(t, root); len(names) != 0 {
		t.Fatalf("Updates_Pending holds %v", names)
	}
}
