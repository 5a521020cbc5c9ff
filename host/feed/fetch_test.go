package feed

import (
	"archive/zip"
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// testZip builds a small valid update zip for a pack.
func testZip(t *testing.T, id, version string) []byte {
	t.Helper()
	bin := []byte("#!/bin/sh\necho " + id + " " + version + "\n")
	sum := sha256.Sum256(bin)
	m := fmt.Sprintf(`{"id":%q,"version":%q,"whats_new":"new things","binaries":{"linux/amd64":{"path":"bin/%s","sha256":%q}}}`,
		id, version, id, hex.EncodeToString(sum[:]))
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for name, data := range map[string][]byte{"pack.json": []byte(m), "bin/" + id: bin} {
		w, err := zw.Create(name)
		if err != nil {
			t.Fatal(err)
		}
		w.Write(data)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// publisher is a feed server: the feed, its signature and the zips.
type publisher struct {
	t      *testing.T
	srv    *httptest.Server
	priv   ed25519.PrivateKey
	feed   []byte
	sig    []byte
	zips   map[string][]byte
	hits   map[string]*atomic.Int32
	handle func(w http.ResponseWriter, r *http.Request) bool // true: handled
}

func newPublisher(t *testing.T) *publisher {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	p := &publisher{t: t, priv: priv, zips: map[string][]byte{}, hits: map[string]*atomic.Int32{}}
	for _, n := range []string{"/feed.json", "/feed.json.sig", "/zips/a"} {
		p.hits[n] = &atomic.Int32{}
	}
	p.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if h := p.hits[r.URL.Path]; h != nil {
			h.Add(1)
		}
		if p.handle != nil && p.handle(w, r) {
			return
		}
		switch {
		case r.URL.Path == "/feed.json":
			w.Write(p.feed)
		case r.URL.Path == "/feed.json.sig" && p.sig != nil:
			w.Write(p.sig)
		case strings.HasPrefix(r.URL.Path, "/zips/") && p.zips[strings.TrimPrefix(r.URL.Path, "/zips/")] != nil:
			w.Write(p.zips[strings.TrimPrefix(r.URL.Path, "/zips/")])
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(p.srv.Close)
	return p
}

// publish writes a feed with the given sequence and expiry listing the
// zips (name -> content; sha256 and size from the content unless
// overridden), and signs it.
func (p *publisher) publish(seq int64, expires time.Time, entries ...Entry) {
	doc := Document{Format: 1, Sequence: seq, Expires: expires, Updates: entries}
	data, err := json.Marshal(doc)
	if err != nil {
		p.t.Fatal(err)
	}
	p.feed = data
	p.sig = []byte(base64.StdEncoding.EncodeToString(ed25519.Sign(p.priv, data)) + "\n")
}

func (p *publisher) entry(id, version string, content []byte) Entry {
	name := id + "-" + version + ".zip"
	p.zips[name] = content
	sum := sha256.Sum256(content)
	return Entry{PackID: id, Version: version, URL: "zips/" + name, SHA256: hex.EncodeToString(sum[:]), Size: int64(len(content))}
}

// trust writes the publisher's public key into root/trusted_keys.
func (p *publisher) trust(t *testing.T, root string) {
	dir := filepath.Join(root, "trusted_keys")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	pub := p.priv.Public().(ed25519.PublicKey)
	if err := os.WriteFile(filepath.Join(dir, "publisher.pub"), []byte(base64.StdEncoding.EncodeToString(pub)+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
}

func (p *publisher) fetcher(root string) *Fetcher {
	return &Fetcher{Root: root, URL: p.srv.URL + "/feed.json", Backoff: time.Millisecond, Attempts: 3}
}

func newRoot(t *testing.T) string {
	root := t.TempDir()
	for _, d := range []string{PendingDir, "packs", DataDir} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

// pendingFiles lists every file in Updates_Pending, hidden ones included.
func pendingFiles(t *testing.T, root string) []string {
	entries, err := os.ReadDir(filepath.Join(root, PendingDir))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	sort.Strings(names)
	return names
}

func future() time.Time { return time.Now().Add(24 * time.Hour).UTC().Truncate(time.Second) }

func TestAGoodDownloadLandsInUpdatesPending(t *testing.T) {
	root := newRoot(t)
	p := newPublisher(t)
	p.trust(t, root)
	z := testZip(t, "notes", "1.2.0")
	p.publish(7, future(), p.entry("notes", "1.2.0", z))
	res, err := p.fetcher(root).Fetch(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if res.SignedBy != "publisher" || res.Sequence != 7 || len(res.Updates) != 1 || res.Updates[0].State != StateDownloaded {
		t.Fatalf("result %+v", res)
	}
	got, err := os.ReadFile(filepath.Join(root, PendingDir, "notes-1.2.0.zip"))
	if err != nil || !bytes.Equal(got, z) {
		t.Fatalf("pending zip: %v (equal %v)", err, bytes.Equal(got, z))
	}
	if names := pendingFiles(t, root); len(names) != 1 {
		t.Fatalf("Updates_Pending holds %v", names)
	}
	// A second fetch of the same feed finds it pending and downloads nothing.
	res, err = p.fetcher(root).Fetch(context.Background())
	if err != nil || res.Updates[0].State != StatePending {
		t.Fatalf("second fetch: %+v, %v", res, err)
	}
	state, _ := os.ReadFile(filepath.Join(root, DataDir, StateFile))
	if !strings.Contains(string(state), `"sequence": 7`) {
		t.Fatalf("feed state %s", state)
	}
}

func TestBadDownloadsLeaveNothingInUpdatesPending(t *testing.T) {
	z := testZip(t, "notes", "1.2.0")
	cases := []struct {
		name   string
		entry  func(p *publisher) Entry
		handle func(w http.ResponseWriter, r *http.Request) bool
		want   []string
		is     error
		tries  int32
	}{
		{
			name: "a sha256 mismatch is discarded",
			entry: func(p *publisher) Entry {
				e := p.entry("notes", "1.2.0", z)
				e.SHA256 = strings.Repeat("ab", 32)
				return e
			},
			want:  []string{"notes-1.2.0.zip: sha256 mismatch (feed abab", "the download was deleted and nothing was added to Updates_Pending"},
			is:    ErrChecksum,
			tries: 1,
		},
		{
			name:  "a truncated download is retried, then given up",
			entry: func(p *publisher) Entry { return p.entry("notes", "1.2.0", z) },
			handle: func(w http.ResponseWriter, r *http.Request) bool {
				if !strings.HasPrefix(r.URL.Path, "/zips/") {
					return false
				}
				// Promise the whole zip, send half, hang up.
				w.Header().Set("Content-Length", fmt.Sprint(len(z)))
				w.Write(z[:len(z)/2])
				http.NewResponseController(w).Flush()
				panic(http.ErrAbortHandler)
			},
			want:  []string{fmt.Sprintf("notes-1.2.0.zip: size mismatch: download truncated at %d of %d bytes", len(z)/2, len(z)), "(after 3 attempts)"},
			is:    ErrSize,
			tries: 3,
		},
		{
			name:  "server errors are retried until the attempts run out",
			entry: func(p *publisher) Entry { return p.entry("notes", "1.2.0", z) },
			handle: func(w http.ResponseWriter, r *http.Request) bool {
				if !strings.HasPrefix(r.URL.Path, "/zips/") {
					return false
				}
				http.Error(w, "overloaded", http.StatusServiceUnavailable)
				return true
			},
			want:  []string{"notes-1.2.0.zip: server error: 503 Service Unavailable (after 3 attempts)"},
			is:    ErrHTTP,
			tries: 3,
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			root := newRoot(t)
			p := newPublisher(t)
			p.trust(t, root)
			e := c.entry(p)
			e.URL = "zips/a"
			p.zips["a"] = z
			p.handle = c.handle
			p.publish(1, future(), e)
			res, err := p.fetcher(root).Fetch(context.Background())
			if err == nil || !errors.Is(err, c.is) {
				t.Fatalf("err %v, want %v", err, c.is)
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Fatalf("err %q lacks %q", err, w)
				}
			}
			if res.Updates[0].State != StateFailed {
				t.Fatalf("state %s", res.Updates[0].State)
			}
			if names := pendingFiles(t, root); len(names) != 0 {
				t.Fatalf("Updates_Pending holds %v", names)
			}
			if n := p.hits["/zips/a"].Load(); n != c.tries {
				t.Fatalf("the zip was asked for %d times, want %d", n, c.tries)
			}
		})
	}
}

func TestServerErrorsOnTheFeedAreRetried(t *testing.T) {
	root := newRoot(t)
	p := newPublisher(t)
	z := testZip(t, "notes", "1.2.0")
	p.publish(3, future(), p.entry("notes", "1.2.0", z))
	p.handle = func(w http.ResponseWriter, r *http.Request) bool {
		if r.URL.Path == "/feed.json" && p.hits["/feed.json"].Load() <= 2 {
			http.Error(w, "try later", http.StatusBadGateway)
			return true
		}
		return false
	}
	res, err := p.fetcher(root).Fetch(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if p.hits["/feed.json"].Load() != 3 || res.SignedBy != "" || res.Updates[0].State != StateDownloaded {
		t.Fatalf("feed asked %d times; result %+v", p.hits["/feed.json"].Load(), res)
	}
}

func TestRefusedFeedsDownloadNothing(t *testing.T) {
	z := testZip(t, "notes", "1.2.0")
	cases := []struct {
		name  string
		setup func(t *testing.T, root string, p *publisher)
		want  string
		is    error
	}{
		{
			name: "a replayed older feed",
			setup: func(t *testing.T, root string, p *publisher) {
				p.publish(10, future())
				if _, err := p.fetcher(root).Check(context.Background()); err != nil {
					t.Fatal(err)
				}
				p.publish(9, future(), p.entry("notes", "1.2.0", z))
			},
			want: "feed is older than one already seen (replayed): sequence 9, but 10 was seen on",
			is:   ErrReplayed,
		},
		{
			name: "the same sequence with other content",
			setup: func(t *testing.T, root string, p *publisher) {
				p.publish(10, future())
				if _, err := p.fetcher(root).Check(context.Background()); err != nil {
					t.Fatal(err)
				}
				p.publish(10, future(), p.entry("notes", "1.2.0", z))
			},
			want: "sequence 10 was seen before with other content",
			is:   ErrReplayed,
		},
		{
			name: "an expired feed",
			setup: func(t *testing.T, root string, p *publisher) {
				p.publish(1, time.Now().Add(-time.Hour), p.entry("notes", "1.2.0", z))
			},
			want: "feed has expired at ",
			is:   ErrExpired,
		},
		{
			name: "a feed signed by an untrusted key",
			setup: func(t *testing.T, root string, p *publisher) {
				p.publish(1, future(), p.entry("notes", "1.2.0", z))
				_, other, _ := ed25519.GenerateKey(rand.Reader)
				p.sig = []byte(base64.StdEncoding.EncodeToString(ed25519.Sign(other, p.feed)))
			},
			want: "signature does not verify with any trusted key (tried publisher); the feed was not used",
			is:   ErrBadSignature,
		},
		{
			name: "a feed changed after signing",
			setup: func(t *testing.T, root string, p *publisher) {
				p.publish(1, future(), p.entry("notes", "1.2.0", z))
				p.feed = bytes.Replace(p.feed, []byte(`"sequence":1`), []byte(`"sequence":2`), 1)
			},
			want: "signature does not verify with any trusted key",
			is:   ErrBadSignature,
		},
		{
			name: "an unsigned feed while keys are trusted",
			setup: func(t *testing.T, root string, p *publisher) {
				p.publish(1, future(), p.entry("notes", "1.2.0", z))
				p.sig = nil
			},
			want: "feed is not signed (no ",
			is:   ErrUnsigned,
		},
	}
	for _, c := range cases {
		t.Run(c.name+" is refused", func(t *testing.T) {
			root := newRoot(t)
			p := newPublisher(t)
			p.trust(t, root)
			c.setup(t, root, p)
			before, _ := os.ReadFile(filepath.Join(root, DataDir, StateFile))
			_, err := p.fetcher(root).Fetch(context.Background())
			if err == nil || !errors.Is(err, c.is) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err %v, want %q", err, c.want)
			}
			if names := pendingFiles(t, root); len(names) != 0 {
				t.Fatalf("Updates_Pending holds %v", names)
			}
			after, _ := os.ReadFile(filepath.Join(root, DataDir, StateFile))
			if !bytes.Equal(before, after) {
				t.Fatalf("feed state changed:\n%s\n->\n%s", before, after)
			}
		})
	}
}

func TestEntriesNotNewerThanInstalledAreSkipped(t *testing.T) {
	root := newRoot(t)
	dir := filepath.Join(root, "packs", "notes")
	os.MkdirAll(dir, 0o755)
	os.WriteFile(filepath.Join(dir, "pack.json"), []byte(`{"id":"notes","version":"1.2.0","binaries":{"linux/amd64":{"path":"bin/notes","sha256":"`+strings.Repeat("0", 64)+`"}}}`), 0o644)
	p := newPublisher(t)
	p.publish(1, future(), p.entry("notes", "1.2.0", testZip(t, "notes", "1.2.0")), Entry{PackID: "../evil", Version: "1.0.0", URL: "x", SHA256: strings.Repeat("0", 64), Size: 1})
	res, err := p.fetcher(root).Fetch(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if res.Updates[0].State != StateInstalled || res.Updates[1].State != StateInvalid || !strings.Contains(res.Updates[1].Detail, `pack_id "../evil" must match`) {
		t.Fatalf("%+v", res.Updates)
	}
	if names := pendingFiles(t, root); len(names) != 0 {
		t.Fatalf("Updates_Pending holds %v", names)
	}
}
