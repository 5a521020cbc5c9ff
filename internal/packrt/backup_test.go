package packrt

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"math"
	"reflect"
	"strings"
	"testing"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
)

func TestTheSQLiteValueStreamGivesBackEveryValueAsStored(t *testing.T) {
	rows := [][]any{
		{int64(0), nil, "", []byte{}},
		{int64(math.MinInt64), math.Inf(-1), "tab\tnewline\n\\N", []byte{0, 1, 0xff}},
		{int64(math.MaxInt64), math.SmallestNonzeroFloat64, "émoji 🎉", []byte("blob")},
		{int64(-1), math.Copysign(0, -1), strings.Repeat("x", 70000), nil}, // -0.0 is a positive zero in Go
	}
	var buf bytes.Buffer
	for _, r := range rows {
		var b []byte
		for _, v := range r {
			var err error
			if b, err = appendValue(b, v); err != nil {
				t.Fatal(err)
			}
		}
		buf.Write(b)
	}
	buf.WriteByte(tagEnd)

	d := &valueReader{r: bufio.NewReader(bytes.NewReader(buf.Bytes())), cols: 4}
	for i, want := range rows {
		got := make([]any, 4)
		if err := d.next(got); err != nil {
			t.Fatalf("row %d: %v", i, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("row %d: got %#v, want %#v", i, got, want)
		}
		// DeepEqual takes -0 for 0: compare the floats bit for bit.
		for j, v := range want {
			if f, ok := v.(float64); ok {
				if g, _ := got[j].(float64); math.Float64bits(g) != math.Float64bits(f) {
					t.Fatalf("row %d, column %d: got %v (bits %#x), want %v (bits %#x)", i, j, g, math.Float64bits(g), f, math.Float64bits(f))
				}
			}
		}
	}
	if err := d.next(make([]any, 4)); err != io.EOF {
		t.Fatalf("after the last row: %v, want io.EOF", err)
	}
}

func TestTheSQLiteValueStreamRefusesDamage(t *testing.T) {
	var b []byte
	b, _ = appendValue(b, int64(7))
	b, _ = appendValue(b, "hello")
	whole := append(append([]byte(nil), b...), tagEnd)
	cases := []struct {
		name string
		data []byte
		want string
	}{
		{"cut in the middle of a value", b[:len(b)-2], "value cut short"},
		{"cut at a row boundary, without the end byte", b, "ends without its end byte"},
		{"cut between two values of a row", b[:2], "ends in the middle of a row"},
		{"an unknown tag", append([]byte{9}, whole...), "unknown value tag 0x9"},
		{"data after the end", append(append([]byte(nil), whole...), 1), "data after the end"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d := &valueReader{r: bufio.NewReader(bytes.NewReader(c.data)), cols: 2}
			var err error
			for err == nil {
				err = d.next(make([]any, 2))
			}
			if err == io.EOF || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want an error saying %q", err, c.want)
			}
		})
	}
	if _, err := appendValue(nil, struct{}{}); err == nil || !strings.Contains(err.Error(), "unexpected value of type struct {}") {
		t.Fatalf("appendValue of a struct: %v", err)
	}
}

// copyText is a COPY text stream like the one the backup benchmark's table
// gives: n rows of an id, a note, an author and a flag.
func copyText(n int) []byte {
	var b bytes.Buffer
	for i := 1; i <= n; i++ {
		h := uint64(i) * 0x9e3779b97f4a7c15
		fmt.Fprintf(&b, "%d\tnote %d %016x\tauthor%d\t%c\n", i, i, h, i%100, "tf"[i%2])
	}
	return b.Bytes()
}

// BenchmarkCompress compares the compressors a backup could use on COPY
// text: zstd at its fastest level (what backups use) and gzip at its
// fastest.
func BenchmarkCompress(b *testing.B) {
	data := copyText(200_000)
	for _, c := range []struct {
		name string
		make func(io.Writer) io.WriteCloser
	}{
		{"zstd-fastest", func(w io.Writer) io.WriteCloser {
			z, _ := zstd.NewWriter(w, zstd.WithEncoderLevel(zstd.SpeedFastest))
			return z
		}},
		{"zstd-default", func(w io.Writer) io.WriteCloser {
			z, _ := zstd.NewWriter(w, zstd.WithEncoderLevel(zstd.SpeedDefault))
			return z
		}},
		{"gzip-fastest", func(w io.Writer) io.WriteCloser {
			z, _ := gzip.NewWriterLevel(w, gzip.BestSpeed)
			return z
		}},
	} {
		b.Run(c.name, func(b *testing.B) {
			var out bytes.Buffer
			b.SetBytes(int64(len(data)))
			for i := 0; i < b.N; i++ {
				out.Reset()
				w := c.make(&out)
				w.Write(data)
				w.Close()
			}
			b.ReportMetric(float64(len(data))/float64(out.Len()), "ratio")
		})
	}
}
