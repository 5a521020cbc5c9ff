package update

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
	"strings"
	"testing"

	"github.com/packhost/packhost/host/manifest"
	"github.com/packhost/packhost/host/system"
)

// entry is one file of a hand-made zip.
type entry struct {
	name   string
	data   []byte
	mode   fs.FileMode
	method uint16
	// raw writes data as the entry's compressed bytes, declaring size
	// as its uncompressed size (for lying headers).
	raw  bool
	size uint64
	// csize, when set, is declared as the compressed size instead of
	// len(data).
	csize uint64
}

func sum(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

// goodManifest is a valid manifest for the binary bytes bin.
func goodManifest(id, version string, bin []byte) *manifest.Manifest {
	return &manifest.Manifest{
		ID: id, Version: version,
		Binaries: map[string]manifest.Binary{manifest.Platform(): {
			Path: fmt.Sprintf("bin/%s-%s-%s", id, runtime.GOOS, runtime.GOARCH), SHA256: sum(bin),
		}},
	}
}

func manifestEntry(t testing.TB, m *manifest.Manifest) entry {
	t.Helper()
	data, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return entry{name: manifest.FileName, data: data}
}

func writeZip(t testing.TB, path string, entries []entry) {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, e := range entries {
		h := &zip.FileHeader{Name: e.name, Method: zip.Deflate}
		if e.method != 0 {
			h.Method = e.method
		}
		mode := e.mode
		if mode == 0 {
			mode = 0o644
		}
		h.SetMode(mode)
		if e.raw {
			h.CompressedSize64 = uint64(len(e.data))
			if e.csize != 0 {
				h.CompressedSize64 = e.csize
			}
			h.UncompressedSize64 = e.size
			w, err := zw.CreateRaw(h)
			if err != nil {
				t.Fatal(err)
			}
			w.Write(e.data)
			continue
		}
		w, err := zw.CreateHeader(h)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write(e.data); err != nil {
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

// snapshot maps every path under root to its mode and content hash.
func snapshot(t testing.TB, root string) map[string]string {
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
			v += " " + sum(data)
		}
		out[rel] = v
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func assertSame(t testing.TB, before, after map[string]string) {
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

// hostileCase is a broken zip and the words its refusal must contain.
type hostileCase struct {
	name    string
	keys    bool // the system trusts a key
	make    func(t *testing.T, path string, key ed25519.PrivateKey)
	problem string
}

// hostileVersions says which system the hostile cases are made for:
// notes at installed is installed, the zips carry version (newer), and
// limit is the size limit the inspection applies.
type hostileVersions struct {
	installed, version string
	limit              int64
}

// hostileCases are broken zips of the notes pack for a system as v says.
func hostileCases(v hostileVersions) []hostileCase {
	bin := []byte("#!/bin/sh\necho pack\n")
	binPath := fmt.Sprintf("bin/notes-%s-%s", runtime.GOOS, runtime.GOARCH)
	good := func(t *testing.T) []entry {
		return []entry{manifestEntry(t, goodManifest("notes", v.version, bin)), {name: binPath, data: bin, mode: 0o755}}
	}
	with := func(t *testing.T, m func(*manifest.Manifest), extra ...entry) []entry {
		mf := goodManifest("notes", v.version, bin)
		m(mf)
		return append([]entry{manifestEntry(t, mf), {name: binPath, data: bin, mode: 0o755}}, extra...)
	}
	return []hostileCase{
		{name: "a file that is not a zip is refused", make: func(t *testing.T, p string, _ ed25519.PrivateKey) {
			os.WriteFile(p, []byte("this is not a zip file at all"), 0o644)
		}, problem: "not a zip file, or truncated"},
		{name: "a truncated zip is refused", make: func(t *testing.T, p string, _ ed25519.PrivateKey) {
			writeZip(t, p, good(t))
			data, _ := os.ReadFile(p)
			os.WriteFile(p, data[:len(data)-30], 0o644)
		}, problem: "not a zip file, or truncated"},
		{name: "an entry with .. is refused", make: func(t *testing.T, p string, _ ed25519.PrivateKey) {
			writeZip(t, p, append(good(t), entry{name: "bin/../../evil", data: []byte("x")}))
		}, problem: `unsafe entry: path "bin/../../evil"`},
		{name: "an absolute entry is refused", make: func(t *testing.T, p string, _ ed25519.PrivateKey) {
			writeZip(t, p, append(good(t), entry{name: "/etc/evil", data: []byte("x")}))
		}, problem: `unsafe entry: path "/etc/evil" must be relative`},
		{name: "a symlink entry is refused", make: func(t *testing.T, p string, _ ed25519.PrivateKey) {
			writeZip(t, p, append(good(t), entry{name: "docs/link", data: []byte("/etc/passwd"), mode: fs.ModeSymlink | 0o777}))
		}, problem: `entry "docs/link" is a symlink`},
		{name: "duplicate entry names are refused", make: func(t *testing.T, p string, _ ed25519.PrivateKey) {
			writeZip(t, p, append(good(t), entry{name: binPath, data: []byte("other"), mode: 0o755}))
		}, problem: fmt.Sprintf("duplicate entry %q", binPath)},
		{name: "a manifest listing a file the zip lacks is refused", make: func(t *testing.T, p string, _ ed25519.PrivateKey) {
			writeZip(t, p, with(t, func(m *manifest.Manifest) { m.Files = map[string]string{"docs/README.md": sum([]byte("x"))} }))
		}, problem: "the manifest lists docs/README.md, which the zip lacks"},
		{name: "a zip with a file the manifest omits is refused", make: func(t *testing.T, p string, _ ed25519.PrivateKey) {
			writeZip(t, p, append(good(t), entry{name: "docs/extra.txt", data: []byte("x")}))
		}, problem: "the zip has docs/extra.txt, which the manifest does not list"},
		{name: "a sha256 mismatch is refused", make: func(t *testing.T, p string, _ ed25519.PrivateKey) {
			writeZip(t, p, []entry{manifestEntry(t, goodManifest("notes", v.version, bin)), {name: binPath, data: []byte("tampered"), mode: 0o755}})
		}, problem: binPath + ": sha256 mismatch (manifest " + sum(bin)[:12]},
		{name: "a zip over the size limit is refused", make: func(t *testing.T, p string, _ ed25519.PrivateKey) {
			if v.limit > 8<<20 {
				// Two stored entries whose headers claim more than the
				// limit between them; the limit is checked on the headers,
				// before any byte is read.
				half := uint64(v.limit/2 + 1)
				tiny := []byte("tiny")
				writeZip(t, p, with(t, func(m *manifest.Manifest) { m.Files = map[string]string{"docs/a": sum(tiny), "docs/b": sum(tiny)} },
					entry{name: "docs/a", data: tiny, method: zip.Store, raw: true, size: half, csize: half},
					entry{name: "docs/b", data: tiny, method: zip.Store, raw: true, size: half, csize: half}))
				return
			}
			big := bytes.Repeat([]byte("0123456789abcdef"), int(v.limit/16)+8<<10) // 128 KiB over the limit
			writeZip(t, p, with(t, func(m *manifest.Manifest) { m.Files = map[string]string{"docs/big": sum(big)} }, entry{name: "docs/big", data: big}))
		}, problem: fmt.Sprintf("over the limit of %d", v.limit)},
		{name: "a compression ratio over 100 is refused", make: func(t *testing.T, p string, _ ed25519.PrivateKey) {
			zeros := make([]byte, 300<<10)
			writeZip(t, p, with(t, func(m *manifest.Manifest) { m.Files = map[string]string{"docs/zeros": sum(zeros)} }, entry{name: "docs/zeros", data: zeros}))
		}, problem: `entry "docs/zeros" expands`},
		{name: "a header that lies about the size is refused", make: func(t *testing.T, p string, _ ed25519.PrivateKey) {
			fake := []byte("short")
			writeZip(t, p, with(t, func(m *manifest.Manifest) { m.Files = map[string]string{"docs/lie": sum(fake)} },
				entry{name: "docs/lie", data: fake, method: zip.Store, raw: true, size: 3}))
		}, problem: "read docs/lie: the entry's data does not match its header's size or CRC"},
		{name: "binaries only for another platform are refused", make: func(t *testing.T, p string, _ ed25519.PrivateKey) {
			mf := goodManifest("notes", v.version, bin)
			mf.Binaries = map[string]manifest.Binary{"plan9/mips": {Path: "bin/notes-plan9-mips", SHA256: sum(bin)}}
			writeZip(t, p, []entry{manifestEntry(t, mf), {name: "bin/notes-plan9-mips", data: bin, mode: 0o755}})
		}, problem: "pack notes " + v.version + " has no binary for " + manifest.Platform() + " (it has plan9/mips)"},
		{name: "a version not newer than the installed one is refused", make: func(t *testing.T, p string, _ ed25519.PrivateKey) {
			writeZip(t, p, with(t, func(m *manifest.Manifest) { m.Version = v.installed }))
		}, problem: fmt.Sprintf("version %s is not newer than the installed %s", v.installed, v.installed)},
		{name: "a bad pack id is refused", make: func(t *testing.T, p string, _ ed25519.PrivateKey) {
			data := []byte(`{"id":"../Evil","version":"1.0.0","binaries":{"linux/amd64":{"path":"bin/x","sha256":"` + sum(bin) + `"}}}`)
			writeZip(t, p, []entry{{name: manifest.FileName, data: data}, {name: "bin/x", data: bin}})
		}, problem: `id "../Evil" must match`},
		{name: "a zip without a manifest is refused", make: func(t *testing.T, p string, _ ed25519.PrivateKey) {
			writeZip(t, p, []entry{{name: binPath, data: bin, mode: 0o755}})
		}, problem: "no pack.json in the zip"},
		{name: "a malformed manifest is refused", make: func(t *testing.T, p string, _ ed25519.PrivateKey) {
			writeZip(t, p, []entry{{name: manifest.FileName, data: []byte(`{"id": "notes", "version": `)}, {name: binPath, data: bin}})
		}, problem: "invalid manifest: pack.json: unexpected EOF"},
		{name: "a manifest of an unknown format is refused", make: func(t *testing.T, p string, _ ed25519.PrivateKey) {
			mf, _ := goodManifest("notes", v.version, bin).Marshal()
			mf = bytes.Replace(mf, []byte(`"id"`), []byte(`"format": 9, "id"`), 1)
			writeZip(t, p, []entry{{name: manifest.FileName, data: mf}, {name: binPath, data: bin, mode: 0o755}})
		}, problem: `unknown field "format"`},
		{name: "a host older than min_host_version is refused", make: func(t *testing.T, p string, _ ed25519.PrivateKey) {
			writeZip(t, p, with(t, func(m *manifest.Manifest) { m.MinHostVersion = "9.0.0" }))
		}, problem: "needs host 9.0.0 or later (min_host_version), this host is 0.1.0"},
		{name: "a bad signature is refused", keys: true, make: func(t *testing.T, p string, _ ed25519.PrivateKey) {
			_, other, _ := ed25519.GenerateKey(rand.Reader)
			e := good(t)
			writeZip(t, p, append(e, entry{name: SigFileName, data: SignManifest(other, e[0].data)}))
		}, problem: "bad signature: pack.json.sig is not verified by any trusted key (admin)"},
		{name: "a signature of other bytes is refused", keys: true, make: func(t *testing.T, p string, key ed25519.PrivateKey) {
			e := good(t)
			writeZip(t, p, append(e, entry{name: SigFileName, data: SignManifest(key, append(e[0].data, ' '))}))
		}, problem: "bad signature"},
		{name: "a garbled signature is refused", make: func(t *testing.T, p string, _ ed25519.PrivateKey) {
			writeZip(t, p, append(good(t), entry{name: SigFileName, data: []byte("not base64!")}))
		}, problem: "pack.json.sig is not a base64 ed25519 signature"},
		{name: "an unsigned zip is refused when keys are trusted", keys: true, make: func(t *testing.T, p string, _ ed25519.PrivateKey) {
			writeZip(t, p, good(t))
		}, problem: "the zip is unsigned and this system trusts signing keys"},
	}
}

// installedNotes makes a system directory with notes 1.1.0 installed
// (a manifest and a binary that is never run) and, when keys, a trusted key.
func installedNotes(t *testing.T, keys bool) (root string, key ed25519.PrivateKey) {
	root = t.TempDir()
	bin := []byte("#!/bin/sh\necho old\n")
	m := goodManifest("notes", "1.1.0", bin)
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

func TestInspectRefusesHostileZips(t *testing.T) {
	for _, tc := range hostileCases(hostileVersions{installed: "1.1.0", version: "1.2.0", limit: 512 << 10}) {
		t.Run(tc.name, func(t *testing.T) {
			root, key := installedNotes(t, tc.keys)
			tc.make(t, filepath.Join(root, system.PendingDir, "notes-1.2.0.zip"), key)
			before := snapshot(t, root)
			zips, err := Inspect(root, Options{HostVersion: "0.1.0", Limits: Limits{MaxUncompressed: 512 << 10, MaxRatio: 100}})
			if err != nil {
				t.Fatal(err)
			}
			if len(zips) != 1 {
				t.Fatalf("got %d zips, want 1", len(zips))
			}
			z := zips[0]
			if z.OK() {
				t.Fatalf("zip accepted, want a problem containing %q", tc.problem)
			}
			all := strings.Join(z.Problems, "; ")
			if !strings.Contains(all, tc.problem) {
				t.Errorf("problems %q do not contain %q", all, tc.problem)
			}
			if err := z.Err(); err == nil || !strings.Contains(err.Error(), "the zip was left in Updates_Pending") {
				t.Errorf("Err() = %v", err)
			}
			assertSame(t, before, snapshot(t, root))
		})
	}
}

func TestInspectAcceptsAGoodZip(t *testing.T) {
	for _, keys := range []bool{false, true} {
		t.Run(fmt.Sprintf("with trusted keys %v", keys), func(t *testing.T) {
			root, key := installedNotes(t, keys)
			bin := []byte("#!/bin/sh\necho pack\n")
			m := goodManifest("notes", "1.2.0", bin)
			m.WhatsNew = "Pinned notes."
			m.DBChanges = []manifest.DBChange{{Table: "notes", From: 0, To: 1, Summary: "creates notes"}, {Table: "notes", From: 1, To: 2, Summary: "adds pinned"}}
			e := []entry{manifestEntry(t, m), {name: m.Binaries[manifest.Platform()].Path, data: bin, mode: 0o755}, {name: "bin/", mode: fs.ModeDir | 0o755}}
			if keys {
				e = append(e, entry{name: SigFileName, data: SignManifest(key, e[0].data)})
			}
			writeZip(t, filepath.Join(root, system.PendingDir, "notes-1.2.0.zip"), e)
			zips, err := Inspect(root, Options{HostVersion: "0.1.0"})
			if err != nil {
				t.Fatal(err)
			}
			z := zips[0]
			if !z.OK() {
				t.Fatalf("problems: %v", z.Problems)
			}
			r := z.Report()
			if r.PackID != "notes" || r.Version != "1.2.0" || r.InstalledVersion != "1.1.0" || r.WhatsNew != "Pinned notes." || len(r.DBChanges) != 2 {
				t.Errorf("report %+v", r)
			}
			wantSig, wantBy := SigUnsigned, ""
			if keys {
				wantSig, wantBy = SigSigned, "admin"
			}
			if r.Signature != wantSig || r.SignedBy != wantBy {
				t.Errorf("signature %q by %q, want %q by %q", r.Signature, r.SignedBy, wantSig, wantBy)
			}
		})
	}
}
