// Package feed reads the update feed of a packhost installation and
// downloads the update zips it lists into Updates_Pending.
//
// The feed is a JSON document (Document) at a URL the operator chooses
// (`host updates fetch --feed URL`, or "feed": {"url": ...} in
// <root>/host.json). Its signature is a separate file at the same URL with
// ".sig" appended: the base64 ed25519 signature of the feed's exact bytes,
// as pack.json.sig is for a manifest. When <root>/trusted_keys holds any
// key, the feed must be signed by one of them.
//
// A fetch goes in these steps:
//
//  1. Download the feed (retrying server errors with backoff) and, when
//     trusted keys exist, its signature; verify it.
//  2. Refuse a feed past its expiry time (a frozen feed) or with a sequence
//     number lower than the last one seen, or the same number with other
//     content (a replayed feed). The last sequence seen is kept in
//     <root>/data/feed_state.json per signing key for a signed feed (so
//     serving it from another URL does not reset it), per URL otherwise.
//  3. For each entry newer than the installed pack and not already pending,
//     download the zip to a temporary file inside Updates_Pending, check
//     its size, its sha256 and that its pack.json has the entry's pack id
//     and version, and rename it to <pack-id>-<version>.zip. A zip that
//     fails a check is deleted; nothing half-written is ever listed. The
//     temporary files of a fetch that was killed are removed when the next
//     fetch starts.
package feed

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/Masterminds/semver/v3"
	"github.com/packhost/packhost/host/manifest"
	"github.com/packhost/packhost/internal/naming"
)

// Sentinel errors of a fetch. Each is wrapped with the feed's URL or the
// zip's name; check with errors.Is.
var (
	// ErrUnsigned: trusted keys exist but the feed has no signature. Ask
	// the publisher for a signed feed or remove the keys.
	ErrUnsigned = errors.New("feed is not signed")
	// ErrExpired: the feed's expiry time has passed. The publisher has not
	// refreshed it, or someone is serving a frozen copy.
	ErrExpired = errors.New("feed has expired")
	// ErrReplayed: the feed's sequence number is older than one seen
	// before, or equal with other content.
	ErrReplayed = errors.New("feed is older than one already seen (replayed)")
	// ErrInvalidFeed: the feed document breaks the format.
	ErrInvalidFeed = errors.New("invalid feed")
	// ErrChecksum: a downloaded zip's sha256 is not the feed's. The file
	// was deleted.
	ErrChecksum = errors.New("sha256 mismatch")
	// ErrSize: a downloaded zip is shorter (truncated) or longer than the
	// feed says. The file was deleted.
	ErrSize = errors.New("size mismatch")
	// ErrNotAsListed: a downloaded zip's pack.json is not the pack and
	// version of its feed entry (or cannot be read). The file was deleted;
	// the feed's publisher must fix the entry.
	ErrNotAsListed = errors.New("the zip is not what the feed lists")
	// ErrHTTP: the server answered with an error status.
	ErrHTTP = errors.New("server error")
)

// FormatVersion is the feed format this host reads.
const FormatVersion = 1

// Document is the feed.
//
//	{
//	  "format": 1,
//	  "sequence": 42,
//	  "published": "2026-11-20T10:00:00Z",
//	  "expires": "2026-11-27T10:00:00Z",
//	  "updates": [
//	    {"pack_id": "core", "version": "1.4.0", "url": "core-1.4.0.zip",
//	     "sha256": "<hex>", "size": 123456}
//	  ]
//	}
//
// An entry's url may be relative to the feed's URL.
type Document struct {
	Format    int       `json:"format"`
	Sequence  int64     `json:"sequence"`
	Published time.Time `json:"published,omitzero"`
	Expires   time.Time `json:"expires"`
	Updates   []Entry   `json:"updates"`
}

// Entry is one update zip a feed offers.
type Entry struct {
	PackID  string `json:"pack_id"`
	Version string `json:"version"`
	URL     string `json:"url"`
	SHA256  string `json:"sha256"`
	Size    int64  `json:"size"`
}

// FileName is the name the zip gets in Updates_Pending.
func (e Entry) FileName() string { return e.PackID + "-" + e.Version + ".zip" }

// MaxZipSize bounds the size of one update zip a feed may list.
const MaxZipSize = 1 << 30

// Parse decodes a feed and checks its format; unknown fields are refused,
// so a feed of a newer format is not half understood.
func Parse(data []byte) (*Document, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var d Document
	if err := dec.Decode(&d); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidFeed, err)
	}
	if d.Format != FormatVersion {
		return nil, fmt.Errorf("%w: format %d; this host reads format %d", ErrInvalidFeed, d.Format, FormatVersion)
	}
	if d.Sequence <= 0 {
		return nil, fmt.Errorf("%w: sequence must be a positive number", ErrInvalidFeed)
	}
	if d.Expires.IsZero() {
		return nil, fmt.Errorf("%w: no expiry time (expires)", ErrInvalidFeed)
	}
	return &d, nil
}

// Validate checks an entry's fields; the zip name it makes is safe.
func (e Entry) Validate() error {
	switch {
	case !naming.PackID.MatchString(e.PackID):
		return fmt.Errorf("pack_id %q must match %s", e.PackID, naming.PackID)
	case !isSemver(e.Version):
		return fmt.Errorf("version %q is not semver", e.Version)
	case !manifest.SHA256Pattern.MatchString(e.SHA256):
		return fmt.Errorf("sha256 %q is not 64 lower-case hex digits", e.SHA256)
	case e.Size <= 0 || e.Size > MaxZipSize:
		return fmt.Errorf("size %d is not between 1 and %d bytes", e.Size, MaxZipSize)
	case e.URL == "":
		return errors.New("no url")
	}
	return nil
}

func isSemver(v string) bool {
	_, err := semver.StrictNewVersion(v)
	return err == nil
}

// HostConfigFile is the host's configuration file in the system directory.
const HostConfigFile = "host.json"

// HostConfig is <root>/host.json. Only the feed lives there so far; other
// keys are left for other parts of the host.
type HostConfig struct {
	Feed Config `json:"feed"`
}

// Config is where the feed is and how often the serving host checks it.
type Config struct {
	// URL of the feed; empty means no feed.
	URL string `json:"url"`
	// CheckInterval, such as "6h", makes a serving host check the feed
	// periodically; empty or "0" means never (the default).
	CheckInterval Duration `json:"check_interval,omitempty"`
	// Download makes the periodic check also download what it finds;
	// otherwise the admin page shows it and offers to.
	Download bool `json:"download,omitempty"`
	// MaxExpiry is how far ahead a feed's expiry may be (DefaultMaxExpiry
	// when empty): a feed valid for longer could be frozen and replayed
	// for that long unnoticed.
	MaxExpiry Duration `json:"max_expiry,omitempty"`
}

// DefaultMaxExpiry is the horizon of a feed's expiry: 31 days.
const DefaultMaxExpiry = 31 * 24 * time.Hour

// StaleAfter is how old the last successful verification of a feed may
// be before reports warn: three check intervals, or three days when the
// serving host does not check the feed itself.
func (c Config) StaleAfter() time.Duration {
	if c.CheckInterval > 0 {
		return 3 * time.Duration(c.CheckInterval)
	}
	return 72 * time.Hour
}

// Duration is a time.Duration written as "6h" in JSON.
type Duration time.Duration

// UnmarshalJSON reads "6h30m" (or a number of seconds).
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		var secs float64
		if err2 := json.Unmarshal(b, &secs); err2 != nil {
			return fmt.Errorf("duration %s: write it like \"6h\"", b)
		}
		*d = Duration(secs * float64(time.Second))
		return nil
	}
	if s == "" {
		*d = 0
		return nil
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("duration %q: %w", s, err)
	}
	*d = Duration(v)
	return nil
}

// MarshalJSON writes the duration as "6h0m0s".
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// LoadHostConfig reads <root>/host.json; a missing file is an empty
// configuration.
func LoadHostConfig(root string) (HostConfig, error) {
	var c HostConfig
	path := filepath.Join(root, HostConfigFile)
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return c, nil
	}
	if err != nil {
		return c, fmt.Errorf("read host config: %w", err)
	}
	if err := json.Unmarshal(data, &c); err != nil {
		return c, fmt.Errorf("host config %s: %w; fix the file", path, err)
	}
	if c.Feed.CheckInterval < 0 {
		return c, fmt.Errorf("host config %s: feed.check_interval must not be negative", path)
	}
	return c, nil
}
