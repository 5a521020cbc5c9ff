package updatezip

import (
	"archive/zip"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/Masterminds/semver/v3"

	"github.com/packhost/packhost/host/manifest"
	"github.com/packhost/packhost/host/packs"
	"github.com/packhost/packhost/host/report"
	"github.com/packhost/packhost/host/system"
	"github.com/packhost/packhost/host/trust"
	"github.com/packhost/packhost/host/upgrade"
)

// Limits bound what a zip may expand to.
type Limits struct {
	// MaxUncompressed is the largest total of the entries' sizes.
	MaxUncompressed int64
	// MaxRatio is the largest uncompressed/compressed ratio of an entry
	// of at least ratioMinSize bytes.
	MaxRatio int64
}

// DefaultLimits are SPEC's: 1 GiB and a ratio of 100.
var DefaultLimits = Limits{MaxUncompressed: 1 << 30, MaxRatio: 100}

// ratioMinSize keeps tiny, very repetitive files (an empty-ish config)
// from tripping the ratio check; a zip bomb needs size to do harm.
const ratioMinSize = 64 << 10

// maxManifestSize bounds pack.json and pack.json.sig.
const maxManifestSize = 1 << 20

// Options says what a zip is checked against.
type Options struct {
	// HostVersion is checked against min_host_version.
	HostVersion string
	// Platform is the binary a zip must carry, such as "linux/amd64";
	// manifest.Platform() when empty.
	Platform string
	// Limits; DefaultLimits when zero.
	Limits Limits
	// AllowSameVersion accepts a zip of the installed version (the
	// development loop reinstalls what it just built); older ones stay refused.
	AllowSameVersion bool
	// Only, when not nil, names the zips (file names in Updates_Pending)
	// to inspect; the others are left out, as if not there.
	Only []string
}

func (o Options) WithDefaults() Options {
	if o.Platform == "" {
		o.Platform = manifest.Platform()
	}
	if o.Limits.MaxUncompressed == 0 {
		o.Limits.MaxUncompressed = DefaultLimits.MaxUncompressed
	}
	if o.Limits.MaxRatio == 0 {
		o.Limits.MaxRatio = DefaultLimits.MaxRatio
	}
	return o
}

// Zip is what inspecting one update zip found. Inspecting changes nothing.
type Zip struct {
	// Path is the zip's path; File its base name.
	Path string
	File string
	Size int64
	// Manifest is nil when pack.json could not be read.
	Manifest *manifest.Manifest
	// ManifestBytes are pack.json's exact bytes (what the signature covers).
	ManifestBytes []byte
	// Installed is the installed version of the pack, "" if not installed.
	Installed string
	// InstalledManifest is the installed pack's manifest, nil if none.
	InstalledManifest *manifest.Manifest
	// Signature is one of SigSigned, SigUnsigned, SigInvalid, SigUnverified;
	// SignedBy names the trusted key for SigSigned.
	Signature string
	SignedBy  string
	// Problems says why the zip cannot be installed; empty when it can.
	Problems []string
	// Warnings say what could not be checked before the install, and
	// what the install will do about it; they do not stop it.
	Warnings []string
}

// OK reports whether the zip can be installed.
func (z *Zip) OK() bool { return len(z.Problems) == 0 }

// ID is the pack id, or "" when the manifest could not be read.
func (z *Zip) ID() string {
	if z.Manifest == nil {
		return ""
	}
	return z.Manifest.ID
}

func (z *Zip) problem(format string, a ...any) {
	z.Problems = append(z.Problems, fmt.Sprintf(format, a...))
}

// AddProblem adds a reason the zip cannot be installed, found outside the
// zip (host/preflight: the database, the zip's binary).
func (z *Zip) AddProblem(format string, a ...any) { z.problem(format, a...) }

// AddWarning adds something that could not be checked before the install.
func (z *Zip) AddWarning(format string, a ...any) {
	z.Warnings = append(z.Warnings, fmt.Sprintf(format, a...))
}

// Err describes every problem as one error wrapping ErrInvalidZip, or nil.
func (z *Zip) Err() error {
	if z.OK() {
		return nil
	}
	return fmt.Errorf("%w: %s: %s; the zip was left in %s", ErrInvalidZip, z.File, strings.Join(z.Problems, "; "), system.PendingDir)
}

// NewChanges are the manifest's db_changes that the installed version does
// not have yet: a built manifest lists every step of each table's history,
// so the steps the installed manifest already lists are dropped.
func (z *Zip) NewChanges() []manifest.DBChange {
	if z.Manifest == nil {
		return nil
	}
	have := map[string]int{}
	if z.InstalledManifest != nil {
		for _, c := range z.InstalledManifest.DBChanges {
			have[c.Table] = max(have[c.Table], c.To)
		}
	}
	var out []manifest.DBChange
	for _, c := range z.Manifest.DBChanges {
		if c.To > have[c.Table] {
			out = append(out, c)
		}
	}
	return out
}

// Report is the zip as the status report shows it.
func (z *Zip) Report() report.PendingUpdate {
	u := report.PendingUpdate{
		File: z.File, Size: z.Size, InstalledVersion: z.Installed,
		Signature: z.Signature, SignedBy: z.SignedBy,
		Problems: append([]string(nil), z.Problems...),
		Warnings: append([]string(nil), z.Warnings...),
	}
	if m := z.Manifest; m != nil {
		u.PackID, u.Version, u.WhatsNew, u.MinHostVersion = m.ID, m.Version, m.WhatsNew, m.MinHostVersion
		u.DBChanges = z.NewChanges()
	}
	return u
}

// Reports converts a list of zips for the status report.
func Reports(zips []*Zip) []report.PendingUpdate {
	out := make([]report.PendingUpdate, 0, len(zips))
	for _, z := range zips {
		out = append(out, z.Report())
	}
	return out
}

// Inspect checks every zip in <root>/Updates_Pending against the installed
// packs and the trusted keys, and changes nothing. The zips are sorted in
// install order: dependencies first, core first. The error is for a system
// directory that cannot be read; a bad zip is reported in its Problems.
func Inspect(root string, opts Options) ([]*Zip, error) {
	opts = opts.WithDefaults()
	entries, err := os.ReadDir(filepath.Join(root, system.PendingDir))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", system.PendingDir, err)
	}
	keys, err := trust.LoadTrustedKeys(root)
	if err != nil {
		return nil, fmt.Errorf("load trusted keys: %w; fix or remove the key file", err)
	}
	installed, err := installedManifests(root)
	if err != nil {
		return nil, err
	}
	var zips []*Zip
	found := map[string]bool{}
	for _, e := range entries {
		if e.IsDir() || !strings.HasSuffix(strings.ToLower(e.Name()), ".zip") {
			continue
		}
		if opts.Only != nil && !slices.Contains(opts.Only, e.Name()) {
			continue
		}
		found[e.Name()] = true
		zips = append(zips, InspectZip(filepath.Join(root, system.PendingDir, e.Name()), installed, keys, opts))
	}
	for _, name := range opts.Only {
		if !found[name] {
			return nil, fmt.Errorf("%s is not in %s", name, system.PendingDir)
		}
	}
	crossCheck(zips, installed)
	return Order(zips), nil
}

func installedManifests(root string) (map[string]*manifest.Manifest, error) {
	list, err := packs.Discover(root)
	if err != nil {
		return nil, err
	}
	out := map[string]*manifest.Manifest{}
	for _, p := range list {
		if p.Manifest != nil {
			out[p.ID] = p.Manifest
		}
	}
	return out, nil
}

// crossCheck finds problems between zips: two for one pack, and
// dependencies that are neither installed nor pending.
func crossCheck(zips []*Zip, installed map[string]*manifest.Manifest) {
	byID := map[string][]*Zip{}
	for _, z := range zips {
		if id := z.ID(); id != "" {
			byID[id] = append(byID[id], z)
		}
	}
	for id, list := range byID {
		if len(list) < 2 {
			continue
		}
		var names []string
		for _, z := range list {
			names = append(names, z.File)
		}
		sort.Strings(names)
		for _, z := range list {
			z.problem("more than one pending zip for pack %s (%s); remove all but one", id, strings.Join(names, ", "))
		}
	}
	for _, z := range zips {
		if z.Manifest == nil {
			continue
		}
		for _, d := range z.Manifest.DependsOn {
			if installed[d] == nil && len(byID[d]) == 0 {
				z.problem("depends on pack %s, which is neither installed nor pending", d)
			}
		}
	}
}

// Order sorts zips for installing: core first, then each pack after the
// packs it depends on, then by id (upgrade.Sort); zips without a
// manifest, and second zips of one pack, go last by file name. Missing
// dependencies and cycles do not stop it: crossCheck reports the first,
// and the packs report the second when they start.
func Order(zips []*Zip) []*Zip {
	seen := map[string]bool{}
	var first, rest []*Zip
	for _, z := range zips {
		id := z.ID()
		if id == "" || seen[id] {
			rest = append(rest, z)
			continue
		}
		seen[id] = true
		first = append(first, z)
	}
	out, _ := upgrade.Sort(first, (*Zip).ID, func(z *Zip) []string { return z.Manifest.DependsOn })
	sort.SliceStable(rest, func(i, j int) bool { return rest[i].File < rest[j].File })
	return append(out, rest...)
}

// InspectZip checks one zip. installed maps pack ids to installed manifests.
func InspectZip(zipPath string, installed map[string]*manifest.Manifest, keys []trust.Key, opts Options) *Zip {
	opts = opts.WithDefaults()
	z := &Zip{Path: zipPath, File: filepath.Base(zipPath), Signature: SigUnsigned}
	if fi, err := os.Stat(zipPath); err == nil {
		z.Size = fi.Size()
	}
	zr, err := zip.OpenReader(zipPath)
	if err != nil {
		z.problem("not a zip file, or truncated: %v", err)
		return z
	}
	defer zr.Close()
	files, problems := scanEntries(&zr.Reader, opts.Limits)
	z.Problems = append(z.Problems, problems...)

	mf := files[manifest.FileName]
	if mf == nil {
		z.problem("no %s in the zip", manifest.FileName)
		return z
	}
	z.ManifestBytes, err = readEntry(mf, maxManifestSize)
	if err != nil {
		z.problem("read %s: %v", manifest.FileName, err)
		return z
	}
	m, err := manifest.Parse(z.ManifestBytes)
	if err != nil {
		z.problem("%v", err)
		return z
	}
	z.Manifest = m
	if im := installed[m.ID]; im != nil {
		z.Installed, z.InstalledManifest = im.Version, im
	}

	var sig []byte
	sf := files[SigFileName]
	if sf != nil {
		if sig, err = readEntry(sf, maxManifestSize); err != nil {
			z.problem("read %s: %v", SigFileName, err)
		}
	}
	z.Signature, z.SignedBy, err = verifySignature(keys, z.ManifestBytes, sig, sf != nil)
	if err != nil {
		z.problem("%v", err)
	}

	// The manifest and the zip must list the same files.
	listed := map[string]string{}
	for plat, b := range m.Binaries {
		if prev, ok := listed[b.Path]; ok && prev != b.SHA256 {
			z.problem("binaries: %s is listed twice with different sha256", b.Path)
		}
		listed[b.Path] = b.SHA256
		_ = plat
	}
	for p, sum := range m.Files {
		if prev, ok := listed[p]; ok && prev != sum {
			z.problem("files: %s is listed twice with different sha256", p)
		}
		listed[p] = sum
	}
	for _, p := range sortedKeys(listed) {
		f := files[p]
		if f == nil {
			z.problem("the manifest lists %s, which the zip lacks", p)
			continue
		}
		got, err := entrySHA256(f)
		if err != nil {
			z.problem("read %s: %v", p, err)
			continue
		}
		if got != listed[p] {
			z.problem("%s: sha256 mismatch (manifest %s, file %s)", p, short(listed[p]), short(got))
		}
	}
	for _, p := range sortedKeys(files) {
		if p == manifest.FileName || p == SigFileName {
			continue
		}
		if _, ok := listed[p]; !ok {
			z.problem("the zip has %s, which the manifest does not list", p)
		}
	}

	if _, err := m.BinaryFor(opts.Platform); err != nil {
		z.problem("%v", err)
	}
	if z.Installed != "" {
		if iv, err := semver.NewVersion(z.Installed); err == nil && !m.SemVer().GreaterThan(iv) &&
			!(opts.AllowSameVersion && m.SemVer().Equal(iv)) {
			z.problem("version %s is not newer than the installed %s", m.Version, z.Installed)
		}
	}
	if m.MinHostVersion != "" && opts.HostVersion != "" {
		hv, err := semver.NewVersion(opts.HostVersion)
		if err == nil && hv.LessThan(semver.MustParse(m.MinHostVersion)) {
			z.problem("needs host %s or later (min_host_version), this host is %s; upgrade the host first", m.MinHostVersion, opts.HostVersion)
		}
	}
	return z
}

// scanEntries checks every entry's name, type and size, and returns the
// regular files by name.
func scanEntries(zr *zip.Reader, lim Limits) (map[string]*zip.File, []string) {
	files := map[string]*zip.File{}
	seen := map[string]bool{}
	var problems []string
	var total uint64
	for _, f := range zr.File {
		name := f.Name
		if seen[name] {
			problems = append(problems, fmt.Sprintf("duplicate entry %q", name))
			continue
		}
		seen[name] = true
		mode := f.Mode()
		isDir := strings.HasSuffix(name, "/")
		if err := entryPathOK(strings.TrimSuffix(name, "/")); err != nil {
			problems = append(problems, fmt.Sprintf("unsafe entry: %v", err))
			continue
		}
		switch {
		case mode&os.ModeSymlink != 0:
			problems = append(problems, fmt.Sprintf("entry %q is a symlink; update zips hold regular files only", name))
			continue
		case isDir || mode.IsDir():
			continue
		case !mode.IsRegular():
			problems = append(problems, fmt.Sprintf("entry %q is not a regular file (%s)", name, mode.Type()))
			continue
		}
		if f.Method != zip.Store && f.Method != zip.Deflate {
			problems = append(problems, fmt.Sprintf("entry %q uses compression method %d; only store and deflate are accepted", name, f.Method))
			continue
		}
		total += f.UncompressedSize64
		if f.UncompressedSize64 >= ratioMinSize && f.CompressedSize64 > 0 &&
			f.UncompressedSize64/f.CompressedSize64 > uint64(lim.MaxRatio) {
			problems = append(problems, fmt.Sprintf("entry %q expands %d times (%d to %d bytes), over the limit of %d", name,
				f.UncompressedSize64/f.CompressedSize64, f.CompressedSize64, f.UncompressedSize64, lim.MaxRatio))
			continue
		}
		if f.UncompressedSize64 > 0 && f.CompressedSize64 == 0 && f.Method == zip.Deflate {
			problems = append(problems, fmt.Sprintf("entry %q claims %d bytes from no compressed data", name, f.UncompressedSize64))
			continue
		}
		files[name] = f
	}
	if total > uint64(lim.MaxUncompressed) {
		problems = append(problems, fmt.Sprintf("the zip expands to %d bytes, over the limit of %d", total, lim.MaxUncompressed))
	}
	// A manifest without a file is not a finding here; readers decide.
	return files, problems
}

// entryPathOK is manifest.SafePath without the reserved names, which are
// legitimate zip entries.
func entryPathOK(name string) error {
	if name == manifest.FileName || name == SigFileName {
		return nil
	}
	if name == "" {
		return errors.New("empty entry name")
	}
	if err := manifest.SafePath(name); err != nil {
		return err
	}
	if path.IsAbs(name) {
		return fmt.Errorf("path %q is absolute", name)
	}
	return nil
}

// readEntry reads a whole entry of at most limit bytes. archive/zip checks
// the CRC and that the data matches the declared size.
func readEntry(f *zip.File, limit int64) ([]byte, error) {
	if f.UncompressedSize64 > uint64(limit) {
		return nil, fmt.Errorf("%d bytes, over the limit of %d", f.UncompressedSize64, limit)
	}
	rc, err := f.Open()
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	var buf bytes.Buffer
	if _, err := io.Copy(&buf, io.LimitReader(rc, limit+1)); err != nil {
		return nil, dataErr(err)
	}
	if int64(buf.Len()) > limit {
		return nil, fmt.Errorf("over the limit of %d bytes", limit)
	}
	return buf.Bytes(), nil
}

func entrySHA256(f *zip.File) (string, error) {
	rc, err := f.Open()
	if err != nil {
		return "", err
	}
	defer rc.Close()
	h := sha256.New()
	// archive/zip stops at the declared size with ErrFormat and checks the CRC.
	if _, err := io.Copy(h, rc); err != nil {
		return "", dataErr(err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func short(sum string) string {
	if len(sum) > 12 {
		return sum[:12] + "..."
	}
	return sum
}

// dataErr names what a size or CRC error of archive/zip means.
func dataErr(err error) error {
	if errors.Is(err, zip.ErrFormat) || errors.Is(err, zip.ErrChecksum) || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("the entry's data does not match its header's size or CRC (%v)", err)
	}
	return err
}
