package sysbackup

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// MakeBenchTree writes a system directory of about size bytes: pack
// binaries (a third), compressible text such as a database dump (a third)
// and random data such as compressed uploads (a third), plus small files.
func makeBenchTree(tb testing.TB, root string, size int64) {
	tb.Helper()
	r := rand.New(rand.NewPCG(1, 2))
	write := func(name string, n int64, fill func(w io.Writer, n int64)) {
		p := filepath.Join(root, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			tb.Fatal(err)
		}
		f, err := os.Create(p)
		if err != nil {
			tb.Fatal(err)
		}
		fill(f, n)
		if err := f.Close(); err != nil {
			tb.Fatal(err)
		}
	}
	randomFill := func(w io.Writer, n int64) {
		buf := make([]byte, 1<<20)
		for n > 0 {
			for i := 0; i+8 <= len(buf); i += 8 {
				v := r.Uint64()
				for k := 0; k < 8; k++ {
					buf[i+k] = byte(v >> (8 * k))
				}
			}
			m := min(n, int64(len(buf)))
			w.Write(buf[:m])
			n -= m
		}
	}
	textFill := func(w io.Writer, n int64) {
		var b bytes.Buffer
		for i := 0; int64(b.Len()) < n; i++ {
			fmt.Fprintf(&b, "INSERT INTO notes (id, author, body) VALUES (%d, 'user%d', 'note number %d about %x');\n", i, r.IntN(500), i, r.Uint32())
		}
		w.Write(b.Bytes()[:n])
	}
	// Binaries: mostly code-like bytes, moderately compressible.
	binFill := func(w io.Writer, n int64) {
		buf := make([]byte, 1<<20)
		for n > 0 {
			for i := range buf {
				if r.IntN(3) == 0 {
					buf[i] = byte(r.Uint32())
				} else {
					buf[i] = byte(i % 61)
				}
			}
			m := min(n, int64(len(buf)))
			w.Write(buf[:m])
			n -= m
		}
	}
	third := size / 3
	for i := range 5 {
		write(fmt.Sprintf("packs/pack%d/bin/pack%d-linux-amd64", i, i), third/5, binFill)
		write(fmt.Sprintf("packs/pack%d/pack.json", i), 2000, textFill)
	}
	write("data/host.db", third*3/4, textFill)
	for i := range 200 {
		write(fmt.Sprintf("data/logs/log-%03d.txt", i), third/4/200, textFill)
	}
	for i := range 20 {
		write(fmt.Sprintf("data/uploads/u%02d.jpg", i), third/20, randomFill)
	}
}

// BenchmarkSystemBackup zips a system directory of PACKHOST_BENCH_MB
// megabytes (default 64) and reports MB/s.
func BenchmarkSystemBackup(b *testing.B) {
	mb := int64(64)
	if v, err := strconv.ParseInt(os.Getenv("PACKHOST_BENCH_MB"), 10, 64); err == nil && v > 0 {
		mb = v
	}
	root := b.TempDir()
	makeBenchTree(b, root, mb<<20)
	b.SetBytes(mb << 20)
	b.ResetTimer()
	for b.Loop() {
		if err := ZipTree(context.Background(), root, io.Discard, nil, 0, nil); err != nil {
			b.Fatal(err)
		}
	}
}

// TestMakeBenchTree writes the benchmark tree where PACKHOST_BENCH_TREE
// says, for bench/codeupdate.sh to time against Info-ZIP.
func TestMakeBenchTree(t *testing.T) {
	dir := os.Getenv("PACKHOST_BENCH_TREE")
	if dir == "" {
		t.Skip("PACKHOST_BENCH_TREE is not set; bench/codeupdate.sh sets it")
	}
	mb := int64(500)
	if v, err := strconv.ParseInt(os.Getenv("PACKHOST_BENCH_MB"), 10, 64); err == nil && v > 0 {
		mb = v
	}
	makeBenchTree(t, dir, mb<<20)
}

// TestBackupBenchTree times the system backup of the PACKHOST_BENCH_TREE
// tree and logs "seconds=S bytes=N" for bench/codeupdate.sh. It asserts
// nothing about time.
func TestBackupBenchTree(t *testing.T) {
	dir := os.Getenv("PACKHOST_BENCH_TREE")
	if dir == "" {
		t.Skip("PACKHOST_BENCH_TREE is not set; bench/codeupdate.sh sets it")
	}
	start := time.Now()
	out, err := BackupSystem(context.Background(), dir, start, nil)
	if err != nil {
		t.Fatal(err)
	}
	secs := time.Since(start).Seconds()
	fi, err := os.Stat(out)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Printf("seconds=%.3f bytes=%d\n", secs, fi.Size())
	os.Remove(out)
}
