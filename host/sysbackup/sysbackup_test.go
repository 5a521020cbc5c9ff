package sysbackup

import (
	"archive/zip"
	"bytes"
	"context"
	"crypto/rand"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/packhost/packhost/host/system"
	"github.com/packhost/packhost/internal/ziptest"
)

// writeTree makes a small system directory with compressible, random and
// empty files, nested folders, and the folders the backup leaves out.
func writeTree(t testing.TB, root string) {
	t.Helper()
	random := make([]byte, 3*chunkSize+12345)
	rand.Read(random)
	text := bytes.Repeat([]byte("INSERT INTO notes VALUES (1, 'a note that repeats');\n"), 90000)
	files := map[string][]byte{
		"packs/core/pack.json":            []byte(`{"id":"core"}`),
		"packs/core/bin/core-linux-amd64": random,
		"data/host.db":                    text,
		"data/empty":                      nil,
		"Updates_Pending/x.zip":           []byte("pending"),
		"Updates_Backups/old.zip":         []byte("old backup"),
		"Updates_Installed/a-1.zip":       []byte("installed"),
		"a/b/c/deep.txt":                  []byte(strings.Repeat("deep ", 1000)),
	}
	for name, data := range files {
		p := filepath.Join(root, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func TestSystemBackupHoldsTheWholeSystemDirectory(t *testing.T) {
	if _, err := exec.LookPath("unzip"); err != nil {
		t.Skip("unzip (Info-ZIP) is not installed; it checks the backup independently")
	}
	root := t.TempDir()
	writeTree(t, root)
	ts := time.Date(2026, 11, 25, 10, 30, 0, 0, time.UTC)
	var last, total int64
	out, err := BackupSystem(context.Background(), root, ts, func(d, tot int64) { last, total = d, tot })
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(root, system.BackupsDir, "system-20261125T103000Z.zip"); out != want {
		t.Errorf("backup at %s, want %s", out, want)
	}
	if last != total || total == 0 {
		t.Errorf("progress ended at %d of %d", last, total)
	}
	// Info-ZIP checks every CRC and reads the deflate streams.
	if b, err := exec.Command("unzip", "-tq", out).CombinedOutput(); err != nil {
		t.Fatalf("unzip -t: %v\n%s", err, b)
	}
	dest := t.TempDir()
	if b, err := exec.Command("unzip", "-q", out, "-d", dest).CombinedOutput(); err != nil {
		t.Fatalf("unzip: %v\n%s", err, b)
	}
	want := ziptest.Snapshot(t, root)
	for k := range want {
		if k == "." || strings.HasPrefix(k, system.BackupsDir) || strings.HasPrefix(k, system.InstalledDir) {
			delete(want, k)
		}
	}
	got := ziptest.Snapshot(t, dest)
	delete(got, ".")
	ziptest.AssertSame(t, want, got)
}

func TestStoredChunksAreValidDeflate(t *testing.T) {
	// A stream of stored blocks followed by the final block must inflate
	// back to the data (checked through a whole zip by unzip above; this
	// pins the block format itself).
	data := make([]byte, 200000)
	rand.Read(data)
	s := stored(data)
	if len(s) != len(data)+4*5 {
		t.Errorf("stored %d bytes as %d", len(data), len(s))
	}
}

// An entry of 4 GiB or more has zip64 sizes in its data descriptor and
// central directory record; a smaller one in the same zip keeps 32-bit ones
// (see writeEntry). Both must read back whole.
func TestAZipWithEntriesOverAndUnder4GiBReadsBackWhole(t *testing.T) {
	if os.Getenv("PACKHOST_BIG_TESTS") != "1" {
		t.Skip("set PACKHOST_BIG_TESTS=1 (make test does) to zip a 4 GiB file")
	}
	root := t.TempDir()
	sizes := map[string]int64{"big.db": 4<<30 + 12345, "small.txt": 5}
	// The big file is sparse: zeros that take no disk and deflate to ~4 MB.
	f, err := os.Create(filepath.Join(root, "big.db"))
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(sizes["big.db"]); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "small.txt"), []byte("small"), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "tree.zip")
	zf, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	if err := ZipTree(context.Background(), root, zf, nil, 0, nil); err != nil {
		t.Fatal(err)
	}
	if err := zf.Close(); err != nil {
		t.Fatal(err)
	}

	// archive/zip checks each entry's CRC and size at its end.
	r, err := zip.OpenReader(out)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if len(r.File) != len(sizes) {
		t.Fatalf("%d entries, want %d", len(r.File), len(sizes))
	}
	for _, e := range r.File {
		rc, err := e.Open()
		if err != nil {
			t.Fatal(err)
		}
		n, err := io.Copy(io.Discard, rc)
		rc.Close()
		if err != nil || n != sizes[e.Name] || e.UncompressedSize64 != uint64(n) {
			t.Errorf("%s: read %d bytes (%v), header says %d, want %d", e.Name, n, err, e.UncompressedSize64, sizes[e.Name])
		}
	}
	// Info-ZIP also checks the local headers against the central directory.
	if _, err := exec.LookPath("unzip"); err == nil {
		if b, err := exec.Command("unzip", "-tq", out).CombinedOutput(); err != nil {
			t.Fatalf("unzip -t: %v\n%s", err, b)
		}
	}
}
