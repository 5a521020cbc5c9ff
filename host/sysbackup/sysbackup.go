// Package sysbackup writes the system backup taken before code updates are
// installed: a zip of the whole system directory (without Updates_Backups
// and Updates_Installed), compressed in parallel.
package sysbackup

import (
	"archive/zip"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"time"

	"github.com/klauspost/compress/flate"

	"github.com/packhost/packhost/host/system"
	"github.com/packhost/packhost/internal/backupfile"
	"github.com/packhost/packhost/internal/naming"
)

// chunkSize is the unit of parallel compression: each chunk of a file is
// deflated on its own and the pieces are joined into one deflate stream.
const chunkSize = 1 << 20

// BackupSystem writes <root>/Updates_Backups/system-<ts>.zip with the whole
// system directory except Updates_Backups and Updates_Installed. The zip is
// written under a temporary name and renamed when complete. progress, when
// set, is called with the bytes read so far and the total.
func BackupSystem(ctx context.Context, root string, ts time.Time, progress func(done, total int64)) (string, error) {
	dir := filepath.Join(root, system.BackupsDir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("system backup: %w", err)
	}
	out, err := freeName(dir, "system-"+naming.Stamp(ts))
	if err != nil {
		return "", fmt.Errorf("system backup: %w", err)
	}
	skip := func(rel string) bool { return rel == system.BackupsDir || rel == system.InstalledDir }
	tmp, err := os.CreateTemp(dir, ".system-*.zip.tmp")
	if err != nil {
		return "", fmt.Errorf("system backup: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := ZipTree(ctx, root, tmp, skip, 0, progress); err != nil {
		tmp.Close()
		return "", fmt.Errorf("system backup of %s: %w", root, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return "", fmt.Errorf("system backup: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return "", fmt.Errorf("system backup: %w", err)
	}
	// A link, not a rename: it fails instead of replacing a backup that
	// took the name meanwhile.
	if err := os.Link(tmp.Name(), out); err != nil {
		return "", fmt.Errorf("system backup: %w", err)
	}
	return out, backupfile.SyncDir(dir)
}

// freeName is the first of base.zip, base.2.zip, base.3.zip... that does
// not exist in dir: two backups within one second keep both.
func freeName(dir, base string) (string, error) {
	for n := 1; n < 1000; n++ {
		name := base + ".zip"
		if n > 1 {
			name = fmt.Sprintf("%s.%d.zip", base, n)
		}
		p := filepath.Join(dir, name)
		if _, err := os.Lstat(p); errors.Is(err, os.ErrNotExist) {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s: too many backups in one second", base)
}

type treeFile struct {
	rel  string
	path string
	info fs.FileInfo
}

// chunkJob is one chunk to compress; done receives the deflate bytes.
type chunkJob struct {
	data []byte
	out  []byte
	done chan struct{}
}

// fileJob is one file in the writer's order.
type fileJob struct {
	f      treeFile
	chunks chan *chunkJob // in order; closed after the last
	crc    uint32
	size   int64
	err    error
	read   chan struct{} // closed when crc, size and err are final
}

// ZipTree writes a zip of the directory dir to w, compressing with
// workers goroutines (GOMAXPROCS when 0). skip is asked about each path
// relative to dir (slash separated) and leaves it and everything under it
// out. Symlinks and special files are left out; the tree is a system
// directory, which holds regular files.
func ZipTree(ctx context.Context, dir string, w io.Writer, skip func(rel string) bool, workers int, progress func(done, total int64)) error {
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	var files []treeFile
	var total int64
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == dir {
			return nil
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		if skip != nil && skip(rel) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		if !d.IsDir() && !info.Mode().IsRegular() {
			return nil
		}
		files = append(files, treeFile{rel: rel, path: p, info: info})
		if info.Mode().IsRegular() {
			total += info.Size()
		}
		return nil
	})
	if err != nil {
		return err
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	jobs := make(chan *chunkJob, workers)
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := newChunker()
			for j := range jobs {
				j.out = c.compress(j.data)
				close(j.done)
			}
		}()
	}
	// The reader reads files in order, hands chunks to the workers and the
	// files to the writer; inflight bounds the chunks held in memory.
	order := make(chan *fileJob, 4*workers)
	inflight := make(chan struct{}, 4*workers)
	go func() {
		defer close(order)
		defer close(jobs)
		for _, f := range files {
			// The chunks held in memory are bounded by inflight, so this
			// buffer never fills: the reader runs ahead of the writer.
			n := min(f.info.Size()/chunkSize+1, int64(cap(inflight)))
			fj := &fileJob{f: f, chunks: make(chan *chunkJob, n), read: make(chan struct{})}
			select {
			case order <- fj:
			case <-ctx.Done():
				return
			}
			if f.info.IsDir() {
				close(fj.chunks)
				close(fj.read)
				continue
			}
			fj.err = readChunks(ctx, f.path, func(data []byte) bool {
				fj.crc = crc32.Update(fj.crc, crc32.IEEETable, data)
				fj.size += int64(len(data))
				j := &chunkJob{data: data, done: make(chan struct{})}
				select {
				case inflight <- struct{}{}:
				case <-ctx.Done():
					return false
				}
				// A chunk is handed to the writer only once a worker has
				// it: the writer waits for every chunk it was handed, so
				// one that no worker would ever compress (the context
				// ended in between) must never reach it.
				select {
				case jobs <- j:
				case <-ctx.Done():
					<-inflight
					return false
				}
				fj.chunks <- j
				return true
			})
			close(fj.chunks)
			close(fj.read)
		}
	}()
	defer wg.Wait()

	zw := zip.NewWriter(w)
	var done int64
	for fj := range order {
		if err := writeEntry(zw, fj, inflight, &done, total, progress); err != nil {
			cancel()
			for range order { // let the reader finish
			}
			return err
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return zw.Close()
}

func writeEntry(zw *zip.Writer, fj *fileJob, inflight chan struct{}, done *int64, total int64, progress func(done, total int64)) error {
	f := fj.f
	h := &zip.FileHeader{Name: f.rel, Modified: f.info.ModTime()}
	h.SetMode(f.info.Mode())
	if f.info.IsDir() {
		h.Name += "/"
		_, err := zw.CreateHeader(h)
		return err
	}
	h.Method = zip.Deflate
	h.Flags |= 0x8 // sizes and CRC follow the data (set below, before the next entry)
	out, err := zw.CreateRaw(h)
	if err != nil {
		return err
	}
	var compressed int64
	for j := range fj.chunks {
		<-j.done
		n, err := out.Write(j.out)
		compressed += int64(n)
		*done += int64(len(j.data))
		j.data, j.out = nil, nil
		<-inflight
		if err != nil {
			for j := range fj.chunks {
				<-j.done
				<-inflight
			}
			return err
		}
		if progress != nil {
			progress(*done, total)
		}
	}
	<-fj.read
	if fj.err != nil {
		return fmt.Errorf("read %s: %w", f.rel, fj.err)
	}
	n, err := out.Write(finalBlock)
	compressed += int64(n)
	if err != nil {
		return err
	}
	h.CRC32 = fj.crc
	h.CompressedSize64 = uint64(compressed)
	h.UncompressedSize64 = uint64(fj.size)
	// archive/zip fills the 32-bit sizes from the 64-bit ones in CreateRaw,
	// but with the data-descriptor flag the sizes are known only now, and
	// for an entry under 0xffffffff bytes (4 GiB) it writes the data
	// descriptor and the central directory record from the 32-bit fields.
	// (From 4 GiB on it writes zip64 records from the 64-bit fields and
	// ignores these.) Without them a small entry reads as 0 bytes.
	//lint:ignore SA1019 archive/zip still reads these for a raw entry with a data descriptor; see above
	h.CompressedSize, h.UncompressedSize = uint32(min(h.CompressedSize64, 0xffffffff)), uint32(min(h.UncompressedSize64, 0xffffffff))
	return nil
}

// finalBlock is an empty, final stored deflate block: it ends the stream
// made of the chunks' non-final blocks.
var finalBlock = []byte{0x01, 0x00, 0x00, 0xff, 0xff}

func readChunks(ctx context.Context, path string, each func([]byte) bool) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	for {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		buf := make([]byte, chunkSize)
		n, err := io.ReadFull(f, buf)
		if n > 0 && !each(buf[:n]) {
			return ctx.Err()
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// chunker deflates chunks into byte-aligned, non-final blocks, and stores
// chunks that do not compress (random data, compressed files) as stored
// blocks instead of spending time on them: a sample decides.
type chunker struct {
	fw     *flate.Writer
	sample *flate.Writer
	buf    bytes.Buffer
}

// compressLevel is the deflate level of the system backup: klauspost's
// level 5 compresses about like Info-ZIP's default -6, much faster.
const compressLevel = 5

const sampleSize = 32 << 10

func newChunker() *chunker {
	fw, _ := flate.NewWriter(io.Discard, compressLevel)
	sample, _ := flate.NewWriter(io.Discard, flate.BestSpeed)
	return &chunker{fw: fw, sample: sample}
}

func (c *chunker) compress(data []byte) []byte {
	if len(data) >= 4*sampleSize {
		c.buf.Reset()
		c.sample.Reset(&c.buf)
		c.sample.Write(data[:sampleSize])
		c.sample.Flush()
		if c.buf.Len() > sampleSize*97/100 {
			return stored(data)
		}
	}
	c.buf.Reset()
	c.fw.Reset(&c.buf)
	c.fw.Write(data)
	c.fw.Flush() // ends byte aligned, not final
	if c.buf.Len() >= len(data)+len(data)/65535*5+5 {
		return stored(data)
	}
	return bytes.Clone(c.buf.Bytes())
}

// stored wraps data in non-final stored deflate blocks.
func stored(data []byte) []byte {
	out := make([]byte, 0, len(data)+(len(data)/65535+1)*5)
	for len(data) > 0 {
		n := min(len(data), 65535)
		var hdr [5]byte
		hdr[0] = 0x00
		binary.LittleEndian.PutUint16(hdr[1:], uint16(n))
		binary.LittleEndian.PutUint16(hdr[3:], ^uint16(n))
		out = append(out, hdr[:]...)
		out = append(out, data[:n]...)
		data = data[n:]
	}
	return out
}
