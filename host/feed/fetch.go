package feed

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/Masterminds/semver/v3"
	"github.com/hashicorp/go-hclog"

	"github.com/packhost/packhost/host/locks"
	"github.com/packhost/packhost/host/packs"
	"github.com/packhost/packhost/host/progress"
	"github.com/packhost/packhost/host/trust"
	"github.com/packhost/packhost/host/updatezip"
)

// Folders of the system directory the fetcher uses (SPEC).
const (
	PendingDir = "Updates_Pending"
	DataDir    = "data"
	StateFile  = "feed_state.json"
)

// MaxFeedSize bounds the feed document and its signature.
const MaxFeedSize = 4 << 20

// Fetcher reads a feed and downloads what it offers. The zero values of
// its optional fields are sensible defaults.
type Fetcher struct {
	// Root is the system directory.
	Root string
	// URL is the feed's address (http or https).
	URL string
	// Client makes the requests; a client with connect and header
	// timeouts when nil.
	Client *http.Client
	// Attempts per download (default 4) and the wait before the second
	// one (default 1s), doubled after each failure up to 30s.
	Attempts int
	Backoff  time.Duration
	Log      hclog.Logger
	// Progress, when set, shows each download as a task named for its zip,
	// updated at every whole percent: set it for a terminal. When nil,
	// each download is logged once.
	Progress *progress.Reporter
	// Now is the clock checked against the feed's expiry (time.Now).
	Now func() time.Time
	// Command names the fetch in the system lock ("host updates fetch");
	// LockWait bounds the wait for it (locks.DefaultWait when 0).
	Command  string
	LockWait time.Duration
	// IdleTimeout ends a read that receives nothing for that long
	// (DefaultIdleTimeout); MinRate ends one that receives less than that
	// many bytes a second on average after RateGrace (DefaultMinRate,
	// DefaultRateGrace). A stalled or trickling server cannot hold a fetch.
	IdleTimeout time.Duration
	MinRate     int64
	RateGrace   time.Duration
	// MaxExpiry refuses a feed whose expiry is further ahead
	// (DefaultMaxExpiry when 0).
	MaxExpiry time.Duration
}

// Defaults of a Fetcher's read guards.
const (
	DefaultIdleTimeout = 30 * time.Second
	DefaultMinRate     = 1024
	DefaultRateGrace   = 15 * time.Second
)

// ErrStalled is wrapped by the error of a read that the server stalled
// or trickled past the guards.
var ErrStalled = errors.New("the server stalled")

// lock takes the system's fetch lock: fetches run beside a serving host,
// never beside a command that changes the system or another fetch (which
// would sweep each other's downloads).
func (f *Fetcher) lock(ctx context.Context) (*locks.Lock, error) {
	cmd := f.Command
	if cmd == "" {
		cmd = "host updates fetch"
	}
	return locks.Acquire(ctx, f.Root, locks.Fetch, cmd, locks.Options{Wait: f.LockWait, Waiting: func(hs []locks.Holder) {
		f.Log.Info("waiting for the system's fetch lock", "held_by", len(hs))
	}})
}

// Entry states in a Result.
const (
	StateAvailable  = "available"  // newer than installed, not pending: Fetch downloads it
	StateDownloaded = "downloaded" // Fetch put it into Updates_Pending
	StatePending    = "pending"    // already in Updates_Pending
	StateInstalled  = "installed"  // not newer than the installed pack
	StateInvalid    = "invalid"    // the entry breaks the format; skipped
	StateFailed     = "failed"     // the download failed; nothing was kept
)

// Result is what a check or fetch found.
type Result struct {
	URL       string    `json:"url"`
	Sequence  int64     `json:"sequence"`
	Expires   time.Time `json:"expires"`
	CheckedAt time.Time `json:"checked_at"`
	// SignedBy names the trusted key that signed the feed; empty when no
	// trusted keys exist and the feed was accepted unsigned.
	SignedBy string        `json:"signed_by,omitempty"`
	Updates  []EntryStatus `json:"updates"`
}

// EntryStatus is one entry of the feed and what became of it.
type EntryStatus struct {
	Entry
	State     string `json:"state"`
	Installed string `json:"installed_version,omitempty"`
	Detail    string `json:"detail,omitempty"`
}

// Available counts the entries a fetch would download.
func (r *Result) Available() int {
	n := 0
	for _, u := range r.Updates {
		if u.State == StateAvailable {
			n++
		}
	}
	return n
}

func (f *Fetcher) defaults() {
	if f.Client == nil {
		f.Client = &http.Client{Transport: &http.Transport{
			Proxy:                 http.ProxyFromEnvironment,
			DialContext:           (&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			TLSHandshakeTimeout:   30 * time.Second,
			ResponseHeaderTimeout: 60 * time.Second,
			IdleConnTimeout:       90 * time.Second,
		}}
	}
	if f.Attempts <= 0 {
		f.Attempts = 4
	}
	if f.Backoff <= 0 {
		f.Backoff = time.Second
	}
	if f.Log == nil {
		f.Log = hclog.NewNullLogger()
	}
	if f.Now == nil {
		f.Now = time.Now
	}
	if f.IdleTimeout <= 0 {
		f.IdleTimeout = DefaultIdleTimeout
	}
	if f.MinRate <= 0 {
		f.MinRate = DefaultMinRate
	}
	if f.RateGrace <= 0 {
		f.RateGrace = DefaultRateGrace
	}
	if f.MaxExpiry <= 0 {
		f.MaxExpiry = DefaultMaxExpiry
	}
}

// guarded is a response body read under the fetcher's guards: it ends
// (with ErrStalled) when nothing arrives for IdleTimeout, or when less
// than MinRate bytes a second arrived on average once RateGrace has
// passed.
type guarded struct {
	r      io.Reader
	cancel context.CancelCauseFunc
	mu     sync.Mutex
	n      int64
	last   time.Time
	stop   chan struct{}
}

// guard wraps resp's body; the request must have been made with ctx from
// f.guardedContext, whose cancel is given.
func (f *Fetcher) guard(body io.Reader, cancel context.CancelCauseFunc) *guarded {
	g := &guarded{r: body, cancel: cancel, last: time.Now(), stop: make(chan struct{})}
	start := g.last
	go func() {
		t := time.NewTicker(min(time.Second, f.IdleTimeout/4+time.Millisecond))
		defer t.Stop()
		for {
			select {
			case <-g.stop:
				return
			case now := <-t.C:
				g.mu.Lock()
				idle, n := now.Sub(g.last), g.n
				g.mu.Unlock()
				switch {
				case idle >= f.IdleTimeout:
					g.cancel(fmt.Errorf("%w: nothing arrived for %s", ErrStalled, idle.Round(time.Second)))
					return
				case now.Sub(start) >= f.RateGrace && float64(n)/now.Sub(start).Seconds() < float64(f.MinRate):
					g.cancel(fmt.Errorf("%w: %d bytes in %s, less than %d bytes a second", ErrStalled, n, now.Sub(start).Round(time.Second), f.MinRate))
					return
				}
			}
		}
	}()
	return g
}

func (g *guarded) Read(p []byte) (int, error) {
	n, err := g.r.Read(p)
	if n > 0 {
		g.mu.Lock()
		g.n += int64(n)
		g.last = time.Now()
		g.mu.Unlock()
	}
	return n, err
}

func (g *guarded) close() { close(g.stop) }

// stalled returns the guard's cause when ctx was cancelled by it.
func stalled(ctx context.Context) error {
	if cause := context.Cause(ctx); errors.Is(cause, ErrStalled) {
		return cause
	}
	return nil
}

// Check reads and verifies the feed and says, for each entry, whether it
// is available, installed or pending. It records the feed's sequence
// number and downloads nothing.
func (f *Fetcher) Check(ctx context.Context) (*Result, error) {
	f.defaults()
	l, err := f.lock(ctx)
	if err != nil {
		return nil, err
	}
	defer l.Release()
	return f.check(ctx)
}

func (f *Fetcher) check(ctx context.Context) (*Result, error) {
	base, err := url.Parse(f.URL)
	if err != nil || (base.Scheme != "http" && base.Scheme != "https") || base.Host == "" {
		return nil, fmt.Errorf("feed url %q: must be an http or https address", f.URL)
	}
	data, err := f.get(ctx, f.URL, MaxFeedSize, "feed")
	if err != nil {
		return nil, fmt.Errorf("read feed %s: %w", f.URL, err)
	}
	keys, err := trust.LoadTrustedKeys(f.Root)
	if err != nil {
		return nil, fmt.Errorf("load trusted keys: %w; fix or remove the key file", err)
	}
	res := &Result{URL: f.URL, CheckedAt: f.Now().UTC()}
	var signer *trust.Key
	if len(keys) > 0 {
		sigURL := *base
		sigURL.Path += ".sig"
		sigURL.RawPath = ""
		sig, err := f.get(ctx, sigURL.String(), 4096, "feed signature")
		if errors.Is(err, errNotFound) {
			return nil, fmt.Errorf("feed %s: %w (no %s) and trusted keys exist; ask the publisher for a signed feed", f.URL, ErrUnsigned, sigURL.String())
		}
		if err != nil {
			return nil, fmt.Errorf("read feed signature %s: %w", sigURL.String(), err)
		}
		k, err := verifyKey(keys, data, string(sig))
		if err != nil {
			return nil, fmt.Errorf("feed %s: %w; the feed was not used", f.URL, err)
		}
		res.SignedBy, signer = k.Name, &k
	}
	doc, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("feed %s: %w", f.URL, err)
	}
	res.Sequence, res.Expires = doc.Sequence, doc.Expires
	if now := f.Now(); !now.Before(doc.Expires) {
		return nil, fmt.Errorf("feed %s: %w at %s (it is now %s): the publisher has not refreshed it, or an old copy is being served; nothing was downloaded",
			f.URL, ErrExpired, doc.Expires.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	} else if doc.Expires.After(now.Add(f.MaxExpiry)) {
		return nil, fmt.Errorf("feed %s: %w: it expires %s, further ahead than the %s this host accepts (feed.max_expiry in %s): a feed valid that long could be frozen and replayed unnoticed; ask the publisher to shorten it; nothing was downloaded",
			f.URL, ErrInvalidFeed, doc.Expires.UTC().Format(time.RFC3339), f.MaxExpiry, HostConfigFile)
	}
	if err := f.recordSequence(doc.Sequence, data, signer); err != nil {
		return nil, err
	}

	installed, pending, err := f.local()
	if err != nil {
		return nil, err
	}
	for _, e := range doc.Updates {
		st := EntryStatus{Entry: e, State: StateAvailable, Installed: installed[e.PackID]}
		if err := e.Validate(); err != nil {
			st.State, st.Detail = StateInvalid, err.Error()
			res.Updates = append(res.Updates, st)
			continue
		}
		u, err := base.Parse(e.URL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") {
			st.State, st.Detail = StateInvalid, fmt.Sprintf("url %q is not an http or https address", e.URL)
			res.Updates = append(res.Updates, st)
			continue
		}
		st.URL = u.String()
		v := semver.MustParse(e.Version)
		switch {
		case st.Installed != "" && !newer(v, st.Installed):
			st.State = StateInstalled
		case pending[e.PackID] != nil && !v.GreaterThan(pending[e.PackID]):
			st.State, st.Detail = StatePending, "version "+pending[e.PackID].String()+" is in "+PendingDir
		default:
			if _, err := os.Stat(filepath.Join(f.Root, PendingDir, e.FileName())); err == nil {
				st.State, st.Detail = StatePending, e.FileName()+" is in "+PendingDir
			}
		}
		res.Updates = append(res.Updates, st)
	}
	return res, nil
}

func newer(v *semver.Version, installed string) bool {
	iv, err := semver.NewVersion(installed)
	return err != nil || v.GreaterThan(iv)
}

// Fetch removes the temporary files that an earlier, killed fetch left in
// Updates_Pending, checks the feed and downloads every available entry
// into Updates_Pending. It returns an error naming each download that
// failed after its retries; the others are kept.
func (f *Fetcher) Fetch(ctx context.Context) (*Result, error) {
	f.defaults()
	l, err := f.lock(ctx)
	if err != nil {
		return nil, err
	}
	defer l.Release()
	// Holding the fetch lock, no other fetch is under way: every partial
	// download left is a killed fetch's.
	f.sweepParts(time.Now())
	res, err := f.check(ctx)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Join(f.Root, PendingDir), 0o755); err != nil {
		return res, fmt.Errorf("create %s: %w", PendingDir, err)
	}
	var failed []error
	for i := range res.Updates {
		st := &res.Updates[i]
		if st.State != StateAvailable {
			continue
		}
		if err := f.download(ctx, st.Entry); err != nil {
			st.State, st.Detail = StateFailed, err.Error()
			failed = append(failed, err)
			f.Log.Error("download failed", "zip", st.FileName(), "error", err)
			continue
		}
		st.State = StateDownloaded
		f.Log.Info("downloaded", "zip", st.FileName(), "into", PendingDir)
	}
	if len(failed) > 0 {
		return res, fmt.Errorf("%d of the feed's downloads failed: %w", len(failed), errors.Join(failed...))
	}
	return res, nil
}

// local lists installed versions and the newest pending version per pack.
func (f *Fetcher) local() (map[string]string, map[string]*semver.Version, error) {
	inst, err := packs.Discover(f.Root)
	if err != nil {
		return nil, nil, err
	}
	installed := map[string]string{}
	for _, p := range inst {
		if p.Manifest != nil {
			installed[p.ID] = p.Manifest.Version
		}
	}
	pending := map[string]*semver.Version{}
	paths, _ := filepath.Glob(filepath.Join(f.Root, PendingDir, "*.zip"))
	for _, p := range paths {
		m, err := updatezip.ReadManifest(p)
		if err != nil {
			continue // reported by `host status`; the name check still applies
		}
		v := m.SemVer()
		if cur := pending[m.ID]; cur == nil || v.GreaterThan(cur) {
			pending[m.ID] = v
		}
	}
	return installed, pending, nil
}

// partPattern matches the temporary files of download: os.CreateTemp's
// "."+<zip name>+".*.part", where * is a decimal number.
var partPattern = regexp.MustCompile(`^\.[a-z0-9][a-z0-9._-]*\.zip\.[0-9]+\.part$`)

// sweepParts removes the temporary download files that a fetch killed
// before it could clean up left in Updates_Pending: only names of
// partPattern last written before start (the start of this run), so a
// download another run is writing now is left alone.
func (f *Fetcher) sweepParts(start time.Time) {
	dir := filepath.Join(f.Root, PendingDir)
	entries, err := os.ReadDir(dir)
	if err != nil {
		return // no folder, nothing left over; Fetch creates it
	}
	for _, e := range entries {
		if !e.Type().IsRegular() || !partPattern.MatchString(e.Name()) {
			continue
		}
		info, err := e.Info()
		if err != nil || !info.ModTime().Before(start) {
			continue
		}
		if err := os.Remove(filepath.Join(dir, e.Name())); err != nil && !errors.Is(err, os.ErrNotExist) {
			f.Log.Warn("could not remove an interrupted download", "file", e.Name(), "in", PendingDir, "error", err)
			continue
		}
		f.Log.Info("removed an interrupted download", "file", e.Name(), "in", PendingDir, "bytes", info.Size())
	}
}

// state is <root>/data/feed_state.json: the last sequence number accepted
// and the sha256 of that feed's bytes, per signing key for a signed feed
// ("ed25519:<base64 public key>"), per URL for an unsigned one. Keying a
// signed feed by its key means the same feed served from another address
// cannot start the count again.
type state struct {
	Feeds map[string]seen `json:"feeds"`
}

type seen struct {
	Sequence int64     `json:"sequence"`
	SHA256   string    `json:"sha256"`
	SeenAt   time.Time `json:"seen_at"`
	// URL is where the feed was read; set for entries keyed by a key.
	URL string `json:"url,omitempty"`
	// VerifiedAt is the last time a feed read from URL checked out
	// (signature, expiry, sequence).
	VerifiedAt time.Time `json:"verified_at,omitzero"`
}

// recordSequence refuses a feed older than the last one seen under the
// same key (signer's, or the URL when signer is nil), and records it.
func (f *Fetcher) recordSequence(seq int64, data []byte, signer *trust.Key) error {
	path := filepath.Join(f.Root, DataDir, StateFile)
	var st state
	if b, err := os.ReadFile(path); err == nil {
		if err := json.Unmarshal(b, &st); err != nil {
			return fmt.Errorf("feed state %s: %w; it keeps the last sequence number seen, so fix it rather than delete it", path, err)
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("read feed state: %w", err)
	}
	if st.Feeds == nil {
		st.Feeds = map[string]seen{}
	}
	sum := sha256.Sum256(data)
	hexSum := hex.EncodeToString(sum[:])
	key, rec := f.URL, seen{Sequence: seq, SHA256: hexSum, SeenAt: f.Now().UTC()}
	if signer != nil {
		key, rec.URL = keyID(*signer), f.URL
	}
	last, ok := st.Feeds[key]
	if !ok && signer != nil {
		// A state written before feeds were keyed by their signer.
		last, ok = st.Feeds[f.URL]
	}
	where := ""
	if last.URL != "" {
		where = " from " + last.URL
	}
	if signer != nil {
		where += ", signed by the same key (" + signer.Name + ")"
	}
	switch {
	case ok && seq < last.Sequence:
		return fmt.Errorf("feed %s: %w: sequence %d, but %d was seen on %s%s; nothing was downloaded",
			f.URL, ErrReplayed, seq, last.Sequence, last.SeenAt.UTC().Format(time.RFC3339), where)
	case ok && seq == last.Sequence && hexSum != last.SHA256:
		return fmt.Errorf("feed %s: %w: sequence %d was seen before with other content%s; the publisher must raise the sequence with every change",
			f.URL, ErrReplayed, seq, where)
	case ok && seq == last.Sequence:
		rec = last
	}
	rec.URL, rec.VerifiedAt = f.URL, f.Now().UTC()
	st.Feeds[key] = rec
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("write feed state: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+StateFile+".*")
	if err != nil {
		return fmt.Errorf("write feed state: %w", err)
	}
	defer os.Remove(tmp.Name())
	// A write or sync that failed leaves a short file: report it and keep
	// the state that is there, never rename the short one into its place.
	_, err = tmp.Write(append(b, '\n'))
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write feed state: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write feed state: %w", err)
	}
	return nil
}

// LastVerified says when the feed at url last checked out on this system
// (read from the feed state, changing nothing), and false when it never
// did.
func LastVerified(root, url string) (time.Time, bool) {
	b, err := os.ReadFile(filepath.Join(root, DataDir, StateFile))
	if err != nil {
		return time.Time{}, false
	}
	var st state
	if json.Unmarshal(b, &st) != nil {
		return time.Time{}, false
	}
	var last time.Time
	for _, s := range st.Feeds {
		if s.URL == url && s.VerifiedAt.After(last) {
			last = s.VerifiedAt
		}
	}
	return last, !last.IsZero()
}

// errNotFound is a 404, which is not retried.
var errNotFound = errors.New("not found (404)")

// retryable errors are tried again after a backoff.
type retryable struct{ error }

func (r retryable) Unwrap() error { return r.error }

// retry runs op up to f.Attempts times while it fails with a retryable
// error, waiting f.Backoff, then twice as long each time (at most 30s).
func (f *Fetcher) retry(ctx context.Context, what string, op func() error) error {
	wait := f.Backoff
	var err error
	for attempt := 1; ; attempt++ {
		err = op()
		var r retryable
		if err == nil || !errors.As(err, &r) || attempt >= f.Attempts {
			break
		}
		f.Log.Warn("retrying", "what", what, "attempt", attempt, "of", f.Attempts, "wait", wait, "error", err)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("%w (gave up: %v)", err, ctx.Err())
		case <-t.C:
		}
		wait = min(wait*2, 30*time.Second)
	}
	var r retryable
	if errors.As(err, &r) && f.Attempts > 1 {
		return fmt.Errorf("%w (after %d attempts)", err, f.Attempts)
	}
	return err
}

// request starts a GET; server errors (5xx, 429) and network errors are
// retryable.
func (f *Fetcher) request(ctx context.Context, u string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("User-Agent", "packhost-host")
	resp, err := f.Client.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, err
		}
		return nil, retryable{err}
	}
	if resp.StatusCode == http.StatusOK {
		return resp, nil
	}
	resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusNotFound:
		return nil, errNotFound
	case resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests:
		return nil, retryable{fmt.Errorf("%w: %s", ErrHTTP, resp.Status)}
	default:
		return nil, fmt.Errorf("%w: %s", ErrHTTP, resp.Status)
	}
}

// get reads a small document with retries, under the read guards.
func (f *Fetcher) get(ctx context.Context, u string, limit int64, what string) ([]byte, error) {
	var data []byte
	err := f.retry(ctx, what, func() error {
		rctx, cancel := context.WithCancelCause(ctx)
		defer cancel(nil)
		resp, err := f.request(rctx, u)
		if err != nil {
			if s := stalled(rctx); s != nil {
				return retryable{s}
			}
			return err
		}
		defer resp.Body.Close()
		g := f.guard(resp.Body, cancel)
		defer g.close()
		data, err = io.ReadAll(io.LimitReader(g, limit+1))
		if err != nil {
			if s := stalled(rctx); s != nil {
				err = s
			}
			return retryable{fmt.Errorf("read %s: %w", what, err)}
		}
		if int64(len(data)) > limit {
			return fmt.Errorf("%s is larger than %d bytes", what, limit)
		}
		return nil
	})
	return data, err
}

// download puts one zip into Updates_Pending through a temporary file in
// the same folder (hidden, not ending in .zip, so nothing lists it; see
// partPattern) and a rename, after checking its size, its sha256 and that
// its pack.json is the entry's pack and version.
func (f *Fetcher) download(ctx context.Context, e Entry) error {
	dir := filepath.Join(f.Root, PendingDir)
	dest := filepath.Join(dir, e.FileName())
	err := f.retry(ctx, e.FileName(), func() error {
		rctx, cancel := context.WithCancelCause(ctx)
		defer cancel(nil)
		resp, err := f.request(rctx, e.URL)
		if err != nil {
			if s := stalled(rctx); s != nil {
				return retryable{fmt.Errorf("%s: %w", e.FileName(), s)}
			}
			return fmt.Errorf("%s: %w", e.FileName(), err)
		}
		defer resp.Body.Close()
		g := f.guard(resp.Body, cancel)
		defer g.close()
		if resp.ContentLength >= 0 && resp.ContentLength != e.Size {
			return fmt.Errorf("%s: %w: the server sends %d bytes, the feed says %d; nothing was kept", e.FileName(), ErrSize, resp.ContentLength, e.Size)
		}
		tmp, err := os.CreateTemp(dir, "."+e.FileName()+".*.part")
		if err != nil {
			return fmt.Errorf("%s: %w", e.FileName(), err)
		}
		keep := false
		defer func() {
			if !keep {
				_ = tmp.Close()
				_ = os.Remove(tmp.Name())
			}
		}()
		h := sha256.New()
		var w io.Writer = io.MultiWriter(tmp, h)
		if f.Progress != nil {
			w = io.MultiWriter(w, &percentWriter{r: f.Progress, task: e.FileName(), total: e.Size, last: -1})
		} else {
			f.Log.Info("downloading", "zip", e.FileName(), "bytes", e.Size, "from", e.URL)
		}
		n, err := io.Copy(w, io.LimitReader(g, e.Size+1))
		if s := stalled(rctx); err != nil && s != nil {
			return retryable{fmt.Errorf("%s: %w, after %d of %d bytes; nothing was kept", e.FileName(), s, n, e.Size)}
		}
		switch {
		case err != nil && ctx.Err() != nil:
			return fmt.Errorf("%s: %w", e.FileName(), ctx.Err())
		case err != nil || n < e.Size:
			cause := "the connection ended"
			if err != nil {
				cause = err.Error()
			}
			return retryable{fmt.Errorf("%s: %w: download truncated at %d of %d bytes (%s); nothing was kept", e.FileName(), ErrSize, n, e.Size, cause)}
		case n > e.Size:
			return fmt.Errorf("%s: %w: the server sends more than the feed's %d bytes; nothing was kept", e.FileName(), ErrSize, e.Size)
		}
		if got := hex.EncodeToString(h.Sum(nil)); got != e.SHA256 {
			return fmt.Errorf("%s: %w (feed %s, download %s); the download was deleted and nothing was added to %s",
				e.FileName(), ErrChecksum, e.SHA256, got, PendingDir)
		}
		if err := tmp.Sync(); err != nil {
			return fmt.Errorf("%s: %w", e.FileName(), err)
		}
		if err := tmp.Close(); err != nil {
			return fmt.Errorf("%s: %w", e.FileName(), err)
		}
		if err := matchesEntry(tmp.Name(), e); err != nil {
			return err
		}
		if _, err := os.Stat(dest); err == nil {
			return fmt.Errorf("%s is already in %s; it was not replaced", e.FileName(), PendingDir)
		}
		if err := os.Rename(tmp.Name(), dest); err != nil {
			return fmt.Errorf("%s: %w", e.FileName(), err)
		}
		keep = true
		return nil
	})
	if f.Progress != nil {
		msg := "downloaded into " + PendingDir
		if err != nil {
			msg = "failed; nothing was kept"
		}
		f.Progress.Done(e.FileName(), msg)
	}
	return err
}

// matchesEntry checks that the downloaded zip at path is what the feed
// entry says: its pack.json names the entry's pack and version. The zip is
// read by host/updatezip's inspection, the reader installs use, so the
// manifest checked here is the one that would be installed; the zip's
// other problems (platform, signature, files) are reported by `host
// status` and refused at install, as for a zip dropped in by hand.
func matchesEntry(path string, e Entry) error {
	z := updatezip.InspectZip(path, nil, nil, updatezip.Options{})
	if z.Manifest == nil {
		return fmt.Errorf("%s: %w: its pack.json cannot be read (%s); the download was deleted and nothing was added to %s",
			e.FileName(), ErrNotAsListed, strings.Join(z.Problems, "; "), PendingDir)
	}
	if z.Manifest.ID != e.PackID || z.Manifest.Version != e.Version {
		return fmt.Errorf("%s: %w: the feed lists pack %s version %s, the zip's pack.json says pack %s version %s; the download was deleted and nothing was added to %s; ask the feed's publisher to fix the entry",
			e.FileName(), ErrNotAsListed, e.PackID, e.Version, z.Manifest.ID, z.Manifest.Version, PendingDir)
	}
	return nil
}

// percentWriter reports a download's bytes to a progress.Reporter at
// every whole percent.
type percentWriter struct {
	r     *progress.Reporter
	task  string
	done  int64
	total int64
	last  int64
}

func (p *percentWriter) Write(b []byte) (int, error) {
	p.done += int64(len(b))
	if pct := p.done * 100 / max(p.total, 1); pct != p.last {
		p.last = pct
		p.r.Update(p.task, p.done, p.total, "downloading")
	}
	return len(b), nil
}
