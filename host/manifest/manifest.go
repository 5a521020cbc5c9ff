// Package manifest reads and checks pack.json, the manifest of SPEC that
// describes a pack in an update zip and in its installed directory
// (<root>/packs/<id>/pack.json).
package manifest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path"
	"regexp"
	"runtime"
	"sort"
	"strings"

	"github.com/Masterminds/semver/v3"

	"github.com/packhost/packhost/internal/lint"
	"github.com/packhost/packhost/internal/naming"
)

// FileName is the manifest's name in a zip and in an installed pack's directory.
const FileName = "pack.json"

// Manifest is pack.json.
type Manifest struct {
	ID             string   `json:"id"`
	Version        string   `json:"version"`
	MinHostVersion string   `json:"min_host_version,omitempty"`
	Released       string   `json:"released,omitempty"`
	Description    string   `json:"description,omitempty"`
	WhatsNew       string   `json:"whats_new,omitempty"`
	DependsOn      []string `json:"depends_on,omitempty"`
	// Reads are the tables of other packs the pack reads ("pack.table"),
	// which it is granted on PostgreSQL.
	Reads     []string   `json:"reads,omitempty"`
	DBChanges []DBChange `json:"db_changes,omitempty"`
	// History is the schema every version of every table the pack
	// declares has, per dialect, as the pack's steps make it (host pack
	// build computes it). Nil in manifests of older hosts and of
	// development installs.
	History  *History          `json:"history,omitempty"`
	Binaries map[string]Binary `json:"binaries"`
	Files    map[string]string `json:"files,omitempty"`
}

// DBChange is one table change a release brings: one step of the table's
// history, with what the lint found in it.
type DBChange struct {
	Table       string `json:"table"`
	From        int    `json:"from"`
	To          int    `json:"to"`
	Summary     string `json:"summary"`
	Destructive bool   `json:"destructive"`
	// Lint names the changes of the step that lose data, fail on a
	// table with rows, or break code reading the old shape.
	Lint []lint.Finding `json:"lint,omitempty"`
}

// Binary is the pack executable for one platform.
type Binary struct {
	Path   string `json:"path"`
	SHA256 string `json:"sha256"`
}

var (
	// SHA256Pattern is a sha256 sum as the manifest writes it.
	SHA256Pattern = regexp.MustCompile(`^[0-9a-f]{64}$`)
)

// ErrInvalid is wrapped by every error Parse and Validate return for a
// manifest that breaks the format.
var ErrInvalid = errors.New("invalid manifest")

// Platform is the key of this machine in Binaries, such as "linux/amd64".
func Platform() string { return runtime.GOOS + "/" + runtime.GOARCH }

// Parse decodes and validates a manifest. Unknown fields are refused, so a
// manifest of a newer format is not half understood.
func Parse(data []byte) (*Manifest, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var m Manifest
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrInvalid, FileName, err)
	}
	if dec.More() {
		return nil, fmt.Errorf("%w: %s: trailing data after the JSON object", ErrInvalid, FileName)
	}
	if err := m.Validate(); err != nil {
		return nil, err
	}
	return &m, nil
}

// Load reads and parses the manifest at path.
func Load(p string) (*Manifest, error) {
	data, err := os.ReadFile(p)
	if err != nil {
		return nil, fmt.Errorf("read manifest: %w", err)
	}
	m, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	return m, nil
}

// Validate checks the fields' formats.
func (m *Manifest) Validate() error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, a...))
	}
	if !naming.PackID.MatchString(m.ID) {
		return bad("id %q must match %s", m.ID, naming.PackID)
	}
	if _, err := semver.StrictNewVersion(m.Version); err != nil {
		return bad("version %q is not semver: %v", m.Version, err)
	}
	if m.MinHostVersion != "" {
		if _, err := semver.StrictNewVersion(m.MinHostVersion); err != nil {
			return bad("min_host_version %q is not semver: %v", m.MinHostVersion, err)
		}
	}
	if len(m.Binaries) == 0 {
		return bad("no binaries")
	}
	for plat, b := range m.Binaries {
		if !strings.Contains(plat, "/") {
			return bad("binaries: platform %q must look like linux/amd64", plat)
		}
		if err := SafePath(b.Path); err != nil {
			return bad("binaries[%s]: %v", plat, err)
		}
		if !SHA256Pattern.MatchString(b.SHA256) {
			return bad("binaries[%s]: sha256 %q is not 64 lower-case hex digits", plat, b.SHA256)
		}
	}
	for p, sum := range m.Files {
		if err := SafePath(p); err != nil {
			return bad("files: %v", err)
		}
		if !SHA256Pattern.MatchString(sum) {
			return bad("files[%s]: sha256 %q is not 64 lower-case hex digits", p, sum)
		}
	}
	for _, d := range m.DependsOn {
		if !naming.PackID.MatchString(d) || d == m.ID {
			return bad("depends_on: %q is not another pack's id", d)
		}
	}
	for _, c := range m.DBChanges {
		if c.Table == "" || c.To <= c.From || c.From < 0 {
			return bad("db_changes: table %q from %d to %d is not an upgrade", c.Table, c.From, c.To)
		}
		for _, f := range c.Lint {
			// Rules this host does not know (a newer host's) are shown as
			// they are.
			if f.Rule == "" || f.Table == "" {
				return bad("db_changes: table %s step %d -> %d: a lint finding without a rule or table", c.Table, c.From, c.To)
			}
		}
	}
	if m.History != nil {
		if err := m.History.validate(); err != nil {
			return bad("history: %v", err)
		}
		steps := map[string]int{}
		for _, c := range m.DBChanges {
			steps[c.Table] = max(steps[c.Table], c.To)
		}
		for t, v := range m.History.Tables() {
			if n, ok := steps[t]; ok && n != v {
				return bad("history: table %s has %d versions, db_changes take it to %d", t, v, n)
			}
		}
	}
	return nil
}

// SafePath refuses paths that could leave the pack's directory: absolute,
// with .. or backslashes, or not clean.
func SafePath(p string) error {
	switch {
	case p == "":
		return errors.New("empty path")
	case strings.HasPrefix(p, "/") || strings.Contains(p, "\\") || strings.Contains(p, ":"):
		return fmt.Errorf("path %q must be relative, with forward slashes", p)
	case path.Clean(p) != p:
		return fmt.Errorf("path %q is not clean", p)
	}
	for _, part := range strings.Split(p, "/") {
		if part == ".." || part == "." {
			return fmt.Errorf("path %q must not have . or .. elements", p)
		}
	}
	if p == FileName || p == FileName+".sig" {
		return fmt.Errorf("path %q is reserved", p)
	}
	return nil
}

// SemVer returns the parsed version (Validate has checked it).
func (m *Manifest) SemVer() *semver.Version {
	v, err := semver.StrictNewVersion(m.Version)
	if err != nil {
		return semver.New(0, 0, 0, "", "")
	}
	return v
}

// BinaryFor returns this machine's binary, or an error naming the
// platforms the manifest has.
func (m *Manifest) BinaryFor(platform string) (Binary, error) {
	b, ok := m.Binaries[platform]
	if !ok {
		var have []string
		for p := range m.Binaries {
			have = append(have, p)
		}
		sort.Strings(have)
		return Binary{}, fmt.Errorf("pack %s %s has no binary for %s (it has %s)", m.ID, m.Version, platform, strings.Join(have, ", "))
	}
	return b, nil
}

// Marshal encodes the manifest as indented JSON with a final newline.
func (m *Manifest) Marshal() ([]byte, error) {
	data, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(data, '\n'), nil
}

// Tables returns each table the pack declares with its code version: from
// the history, or, in a manifest without one, from db_changes (which list
// every step of every table).
func (m *Manifest) Tables() map[string]int {
	if m.History != nil {
		return m.History.Tables()
	}
	out := map[string]int{}
	for _, c := range m.DBChanges {
		out[c.Table] = max(out[c.Table], c.To)
	}
	return out
}
