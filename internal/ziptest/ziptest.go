// Package ziptest makes update zips for tests, good and hostile, and
// snapshots of directories to check that nothing changed.
package ziptest

import (
	"archive/zip"
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/packhost/packhost/host/trust"
	"github.com/packhost/packhost/host/updatezip"

	"github.com/packhost/packhost/host/manifest"
	"github.com/packhost/packhost/host/system"
)

// Entry is one file of a hand-made zip.
type Entry struct {
	Name   string
	Data   []byte
	Mode   fs.FileMode
	Method uint16
	// raw writes data as the entry's compressed bytes, declaring size
	// as its uncompressed size (for lying headers).
	Raw  bool
	Size uint64
	// csize, when set, is declared as the compressed size instead of
	// len(data).
	CSize uint64
}

func Sum(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

// GoodManifest is a valid manifest for the binary bytes bin.
func GoodManifest(id, version string, bin []byte) *manifest.Manifest {
	return &manifest.Manifest{
		ID: id, Version: version,
		Binaries: map[string]manifest.Binary{manifest.Platform(): {
			Path: fmt.Sprintf("bin/%s-%s-%s", id, runtime.GOOS, runtime.GOARCH), SHA256: Sum(bin),
		}},
	}
}

func ManifestEntry(t testing.TB, m *manifest.Manifest) Entry {
	t.Helper()
	data, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return Entry{Name: manifest.FileName, Data: data}
}

func WriteZip(t testing.TB, path string, entries []Entry) {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, e := range entries {
		h := &zip.FileHeader{Name: e.Name, Method: zip.Deflate}
		if e.Method != 0 {
			h.Method = e.Method
		}
		mode := e.Mode
		if mode == 0 {
			mode = 0o644
		}
		h.SetMode(mode)
		if e.Raw {
			h.CompressedSize64 = uint64(len(e.Data))
			if e.CSize != 0 {
				h.CompressedSize64 = e.CSize
			}
			h.UncompressedSize64 = e.Size
			w, err := zw.CreateRaw(h)
			if err != nil {
				t.Fatal(err)
			}
			w.Write(e.Data)
			continue
		}
		w, err := zw.CreateHeader(h)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write(e.Data); err != nil {
			t.Fatal(err)
		}
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// Snapshot maps every path under root to its mode and content hash.
func Snapshot(t testing.TB, root string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		v := fi.Mode().String()
		if fi.Mode().IsRegular() {
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			v += " " + Sum(data)
		}
		out[rel] = v
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func AssertSame(t testing.TB, before, after map[string]string) {
	t.Helper()
	for k, v := range before {
		if after[k] != v {
			t.Errorf("%s changed: %q -> %q", k, v, after[k])
		}
	}
	for k, v := range after {
		if _, ok := before[k]; !ok {
			t.Errorf("%s appeared (%s)", k, v)
		}
	}
}

// HostileCase is a broken zip and the words its refusal must contain.
type HostileCase struct {
	Name    string
	Keys    bool // the system trusts a key
	Make    func(t *testing.T, path string, key ed25519.PrivateKey)
	Problem string
}

// HostileVersions says which system the hostile cases are made for:
// notes at installed is installed, the zips carry version (newer), and
// limit is the size limit the inspection applies.
type HostileVersions struct {
	Installed, Version string
	Limit              int64
}

// HostileCases are broken zips of the notes pack for a system as v says.
func HostileCases(v HostileVersions) []HostileCase {
	bin := []byte("#!/bin/sh\necho pack\n")
	binPath := fmt.Sprintf("bin/notes-%s-%s", runtime.GOOS, runtime.GOARCH)
	good := func(t *testing.T) []Entry {
		return []Entry{ManifestEntry(t, GoodManifest("notes", v.Version, bin)), {Name: binPath, Data: bin, Mode: 0o755}}
	}
	with := func(t *testing.T, m func(*manifest.Manifest), extra ...Entry) []Entry {
		mf := GoodManifest("notes", v.Version, bin)
		m(mf)
		return append([]Entry{ManifestEntry(t, mf), {Name: binPath, Data: bin, Mode: 0o755}}, extra...)
	}
	return []HostileCase{
		{Name: "a file that is not a zip is refused", Make: func(t *testing.T, p string, _ ed25519.PrivateKey) {
			os.WriteFile(p, []byte("this is not a zip file at all"), 0o644)
		}, Problem: "not a zip file, or truncated"},
		{Name: "a truncated zip is refused", Make: func(t *testing.T, p string, _ ed25519.PrivateKey) {
			WriteZip(t, p, good(t))
			data, _ := os.ReadFile(p)
			os.WriteFile(p, data[:len(data)-30], 0o644)
		}, Problem: "not a zip file, or truncated"},
		{Name: "an entry with .. is refused", Make: func(t *testing.T, p string, _ ed25519.PrivateKey) {
			WriteZip(t, p, append(good(t), Entry{Name: "bin/../../evil", Data: []byte("x")}))
		}, Problem: `unsafe entry: path "bin/../../evil"`},
		{Name: "an absolute entry is refused", Make: func(t *testing.T, p string, _ ed25519.PrivateKey) {
			WriteZip(t, p, append(good(t), Entry{Name: "/etc/evil", Data: []byte("x")}))
		}, Problem: `unsafe entry: path "/etc/evil" must be relative`},
		{Name: "a symlink entry is refused", Make: func(t *testing.T, p string, _ ed25519.PrivateKey) {
			WriteZip(t, p, append(good(t), Entry{Name: "docs/link", Data: []byte("/etc/passwd"), Mode: fs.ModeSymlink | 0o777}))
		}, Problem: `entry "docs/link" is a symlink`},
		{Name: "duplicate entry names are refused", Make: func(t *testing.T, p string, _ ed25519.PrivateKey) {
			WriteZip(t, p, append(good(t), Entry{Name: binPath, Data: []byte("other"), Mode: 0o755}))
		}, Problem: fmt.Sprintf("duplicate entry %q", binPath)},
		{Name: "a manifest listing a file the zip lacks is refused", Make: func(t *testing.T, p string, _ ed25519.PrivateKey) {
			WriteZip(t, p, with(t, func(m *manifest.Manifest) { m.Files = map[string]string{"docs/README.md": Sum([]byte("x"))} }))
		}, Problem: "the manifest lists docs/README.md, which the zip lacks"},
		{Name: "a zip with a file the manifest omits is refused", Make: func(t *testing.T, p string, _ ed25519.PrivateKey) {
			WriteZip(t, p, append(good(t), Entry{Name: "docs/extra.txt", Data: []byte("x")}))
		}, Problem: "the zip has docs/extra.txt, which the manifest does not list"},
		{Name: "a sha256 mismatch is refused", Make: func(t *testing.T, p string, _ ed25519.PrivateKey) {
			WriteZip(t, p, []Entry{ManifestEntry(t, GoodManifest("notes", v.Version, bin)), {Name: binPath, Data: []byte("tampered"), Mode: 0o755}})
		}, Problem: binPath + ": sha256 mismatch (manifest " + Sum(bin)[:12]},
		{Name: "a zip over the size limit is refused", Make: func(t *testing.T, p string, _ ed25519.PrivateKey) {
			if v.Limit > 8<<20 {
				// Two stored entries whose headers claim more than the
				// limit between them; the limit is checked on the headers,
				// before any byte is read.
				half := uint64(v.Limit/2 + 1)
				tiny := []byte("tiny")
				WriteZip(t, p, with(t, func(m *manifest.Manifest) { m.Files = map[string]string{"docs/a": Sum(tiny), "docs/b": Sum(tiny)} },
					Entry{Name: "docs/a", Data: tiny, Method: zip.Store, Raw: true, Size: half, CSize: half},
					Entry{Name: "docs/b", Data: tiny, Method: zip.Store, Raw: true, Size: half, CSize: half}))
				return
			}
			big := bytes.Repeat([]byte("0123456789abcdef"), int(v.Limit/16)+8<<10) // 128 KiB over the limit
			WriteZip(t, p, with(t, func(m *manifest.Manifest) { m.Files = map[string]string{"docs/big": Sum(big)} }, Entry{Name: "docs/big", Data: big}))
		}, Problem: fmt.Sprintf("over the limit of %d", v.Limit)},
		{Name: "a compression ratio over 100 is refused", Make: func(t *testing.T, p string, _ ed25519.PrivateKey) {
			zeros := make([]byte, 300<<10)
			WriteZip(t, p, with(t, func(m *manifest.Manifest) { m.Files = map[string]string{"docs/zeros": Sum(zeros)} }, Entry{Name: "docs/zeros", Data: zeros}))
		}, Problem: `entry "docs/zeros" expands`},
		{Name: "a header that lies about the size is refused", Make: func(t *testing.T, p string, _ ed25519.PrivateKey) {
			fake := []byte("short")
			WriteZip(t, p, with(t, func(m *manifest.Manifest) { m.Files = map[string]string{"docs/lie": Sum(fake)} },
				Entry{Name: "docs/lie", Data: fake, Method: zip.Store, Raw: true, Size: 3}))
		}, Problem: "read docs/lie: the entry's data does not match its header's size or CRC"},
		{Name: "binaries only for another platform are refused", Make: func(t *testing.T, p string, _ ed25519.PrivateKey) {
			mf := GoodManifest("notes", v.Version, bin)
			mf.Binaries = map[string]manifest.Binary{"plan9/mips": {Path: "bin/notes-plan9-mips", SHA256: Sum(bin)}}
			WriteZip(t, p, []Entry{ManifestEntry(t, mf), {Name: "bin/notes-plan9-mips", Data: bin, Mode: 0o755}})
		}, Problem: "pack notes " + v.Version + " has no binary for " + manifest.Platform() + " (it has plan9/mips)"},
		{Name: "a version not newer than the installed one is refused", Make: func(t *testing.T, p string, _ ed25519.PrivateKey) {
			WriteZip(t, p, with(t, func(m *manifest.Manifest) { m.Version = v.Installed }))
		}, Problem: fmt.Sprintf("version %s is not newer than the installed %s", v.Installed, v.Installed)},
		{Name: "a bad pack id is refused", Make: func(t *testing.T, p string, _ ed25519.PrivateKey) {
			data := []byte(`{"id":"../Evil","version":"1.0.0","binaries":{"linux/amd64":{"path":"bin/x","sha256":"` + Sum(bin) + `"}}}`)
			WriteZip(t, p, []Entry{{Name: manifest.FileName, Data: data}, {Name: "bin/x", Data: bin}})
		}, Problem: `id "../Evil" must match`},
		{Name: "a zip without a manifest is refused", Make: func(t *testing.T, p string, _ ed25519.PrivateKey) {
			WriteZip(t, p, []Entry{{Name: binPath, Data: bin, Mode: 0o755}})
		}, Problem: "no pack.json in the zip"},
		{Name: "a malformed manifest is refused", Make: func(t *testing.T, p string, _ ed25519.PrivateKey) {
			WriteZip(t, p, []Entry{{Name: manifest.FileName, Data: []byte(`{"id": "notes", "version": `)}, {Name: binPath, Data: bin}})
		}, Problem: "invalid manifest: pack.json: unexpected EOF"},
		{Name: "a manifest of an unknown format is refused", Make: func(t *testing.T, p string, _ ed25519.PrivateKey) {
			mf, _ := GoodManifest("notes", v.Version, bin).Marshal()
			mf = bytes.Replace(mf, []byte(`"id"`), []byte(`"format": 9, "id"`), 1)
			WriteZip(t, p, []Entry{{Name: manifest.FileName, Data: mf}, {Name: binPath, Data: bin, Mode: 0o755}})
		}, Problem: `unknown field "format"`},
		{Name: "a host older than min_host_version is refused", Make: func(t *testing.T, p string, _ ed25519.PrivateKey) {
			WriteZip(t, p, with(t, func(m *manifest.Manifest) { m.MinHostVersion = "9.0.0" }))
		}, Problem: "needs host 9.0.0 or later (min_host_version), this host is 0.1.0"},
		{Name: "a bad signature is refused", Keys: true, Make: func(t *testing.T, p string, _ ed25519.PrivateKey) {
			_, other, _ := ed25519.GenerateKey(rand.Reader)
			e := good(t)
			WriteZip(t, p, append(e, Entry{Name: updatezip.SigFileName, Data: trust.SignManifest(other, e[0].Data)}))
		}, Problem: "bad signature: pack.json.sig is not verified by any trusted key (admin)"},
		{Name: "a signature of other bytes is refused", Keys: true, Make: func(t *testing.T, p string, key ed25519.PrivateKey) {
			e := good(t)
			WriteZip(t, p, append(e, Entry{Name: updatezip.SigFileName, Data: trust.SignManifest(key, append(e[0].Data, ' '))}))
		}, Problem: "bad signature"},
		{Name: "a garbled signature is refused", Make: func(t *testing.T, p string, _ ed25519.PrivateKey) {
			WriteZip(t, p, append(good(t), Entry{Name: updatezip.SigFileName, Data: []byte("not base64!")}))
		}, Problem: "pack.json.sig is not a base64 ed25519 signature"},
		{Name: "an unsigned zip is refused when keys are trusted", Keys: true, Make: func(t *testing.T, p string, _ ed25519.PrivateKey) {
			WriteZip(t, p, good(t))
		}, Problem: "the zip is unsigned and this system trusts signing keys"},
	}
}

// InstalledNotes makes a system directory with notes 1.1.0 installed
// (a manifest and a binary that is never run) and, when keys, a trusted key.
func InstalledNotes(t *testing.T, keys bool) (root string, key ed25519.PrivateKey) {
	root = t.TempDir()
	bin := []byte("#!/bin/sh\necho old\n")
	m := GoodManifest("notes", "1.1.0", bin)
	dir := filepath.Join(root, "packs", "notes")
	os.MkdirAll(filepath.Join(dir, "bin"), 0o755)
	data, _ := m.Marshal()
	os.WriteFile(filepath.Join(dir, manifest.FileName), data, 0o644)
	os.WriteFile(filepath.Join(dir, filepath.FromSlash(m.Binaries[manifest.Platform()].Path)), bin, 0o755)
	os.MkdirAll(filepath.Join(root, system.PendingDir), 0o755)
	_, key, _ = ed25519.GenerateKey(rand.Reader)
	if keys {
		os.MkdirAll(filepath.Join(root, system.TrustedKeysDir), 0o755)
		pub := key.Public().(ed25519.PublicKey)
		os.WriteFile(filepath.Join(root, system.TrustedKeysDir, "admin.pub"), []byte(base64.StdEncoding.EncodeToString(pub)+"\n"), 0o644)
	}
	return root, key
}
