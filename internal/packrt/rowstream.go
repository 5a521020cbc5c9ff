package packrt

import (
	"bufio"
	"bytes"
	"context"
	"database/sql"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/klauspost/compress/zstd"
	"gorm.io/gorm"

	"github.com/packhost/packhost/internal/backupfile"
)

// lineCounter counts the rows of a COPY text stream as it passes: one row
// per newline (newlines inside values are escaped as \n).
type lineCounter struct {
	w    io.Writer
	rows int64
	th   *throttle
}

func (c *lineCounter) Write(p []byte) (int, error) {
	c.rows += int64(bytes.Count(p, []byte{'\n'}))
	if err := c.th.report(c.rows, false); err != nil {
		return 0, err
	}
	return c.w.Write(p)
}

func dumpPG(ctx context.Context, conn *sql.Conn, table string, cols []string, w io.Writer, th *throttle) (int64, error) {
	lc := &lineCounter{w: w, th: th}
	var tag pgconn.CommandTag
	err := withPG(conn, func(pc *pgconn.PgConn) error {
		var err error
		tag, err = pc.CopyTo(ctx, lc, fmt.Sprintf("COPY %s (%s) TO STDOUT", quoteIdent(table), quoteIdents(cols)))
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("copy rows out: %w", err)
	}
	if tag.RowsAffected() != lc.rows {
		return 0, fmt.Errorf("copy rows out: the server sent %d rows but %d lines arrived", tag.RowsAffected(), lc.rows)
	}
	return lc.rows, nil
}

// SQLite value stream tags.
const (
	tagNull  = 0
	tagInt   = 1
	tagFloat = 2
	tagText  = 3
	tagBlob  = 4
	tagEnd   = 0xff
)

func dumpSQLite(ctx context.Context, g *gorm.DB, table string, cols []string, w *bufio.Writer, th *throttle) (int64, error) {
	// likely(x) returns x unchanged but hides the declared column type, so
	// the driver hands over the value as stored (a DATETIME column's text
	// is not parsed into a time and written back in another layout).
	sel := make([]string, len(cols))
	for i, c := range cols {
		sel[i] = "likely(" + quoteIdent(c) + ")"
	}
	rows, err := g.Raw("SELECT " + strings.Join(sel, ", ") + " FROM " + quoteIdent(table)).Rows()
	if err != nil {
		return 0, fmt.Errorf("read rows: %w", err)
	}
	defer rows.Close()
	vals := make([]any, len(cols))
	ptrs := make([]any, len(cols))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	var n int64
	var buf []byte
	for rows.Next() {
		if err := rows.Scan(ptrs...); err != nil {
			return n, fmt.Errorf("read row %d: %w", n+1, err)
		}
		buf = buf[:0]
		for i, v := range vals {
			buf, err = appendValue(buf, v)
			if err != nil {
				return n, fmt.Errorf("row %d, column %s: %w", n+1, cols[i], err)
			}
		}
		if _, err := w.Write(buf); err != nil {
			return n, err
		}
		n++
		if n%4096 == 0 {
			if err := th.report(n, false); err != nil {
				return n, err
			}
		}
	}
	if err := rows.Err(); err != nil {
		return n, fmt.Errorf("read rows: %w", err)
	}
	return n, w.WriteByte(tagEnd)
}

func appendValue(b []byte, v any) ([]byte, error) {
	switch x := v.(type) {
	case nil:
		return append(b, tagNull), nil
	case int64:
		return binary.AppendVarint(append(b, tagInt), x), nil
	case float64:
		return binary.BigEndian.AppendUint64(append(b, tagFloat), math.Float64bits(x)), nil
	case string:
		b = binary.AppendUvarint(append(b, tagText), uint64(len(x)))
		return append(b, x...), nil
	case []byte:
		b = binary.AppendUvarint(append(b, tagBlob), uint64(len(x)))
		return append(b, x...), nil
	}
	return b, fmt.Errorf("unexpected value of type %T from sqlite", v)
}

// valueReader decodes the SQLite value stream.
type valueReader struct {
	r    *bufio.Reader
	cols int
}

// next fills row with the next row's values; it returns io.EOF after the
// end byte, and an error for a stream cut short or malformed.
func (d *valueReader) next(row []any) error {
	for i := 0; i < d.cols; i++ {
		tag, err := d.r.ReadByte()
		if err != nil && i == 0 {
			return fmt.Errorf("the rows stream ends without its end byte (cut short): %w", io.ErrUnexpectedEOF)
		}
		if err != nil {
			return fmt.Errorf("the rows stream ends in the middle of a row: %w", io.ErrUnexpectedEOF)
		}
		if tag == tagEnd && i == 0 {
			if _, err := d.r.ReadByte(); err != io.EOF {
				return errors.New("data after the end of the rows stream")
			}
			return io.EOF
		}
		switch tag {
		case tagNull:
			row[i] = nil
		case tagInt:
			v, err := binary.ReadVarint(d.r)
			if err != nil {
				return fmt.Errorf("bad integer: %w", err)
			}
			row[i] = v
		case tagFloat:
			var b [8]byte
			if _, err := io.ReadFull(d.r, b[:]); err != nil {
				return fmt.Errorf("bad real: %w", err)
			}
			row[i] = math.Float64frombits(binary.BigEndian.Uint64(b[:]))
		case tagText, tagBlob:
			n, err := binary.ReadUvarint(d.r)
			if err != nil || n > 1<<31 {
				return fmt.Errorf("bad length %d: %v", n, err)
			}
			// Read what is there, in bounded pieces, instead of trusting
			// the declared length with an allocation: a value that claims
			// gigabytes in a small file fails at its end, having taken
			// only what the file held.
			var buf bytes.Buffer
			if k, err := io.CopyN(&buf, d.r, int64(n)); err != nil {
				return fmt.Errorf("value cut short after %d of %d bytes: %w", k, n, io.ErrUnexpectedEOF)
			}
			b := buf.Bytes()
			if tag == tagText {
				row[i] = string(b)
			} else {
				row[i] = b
			}
		default:
			return fmt.Errorf("unknown value tag %#x", tag)
		}
	}
	return nil
}

// openRows opens a verified rows file for decoding.
func openRows(dir string, t backupfile.Table) (io.Reader, func(), error) {
	f, err := os.Open(filepath.Join(dir, t.RowsFile))
	if err != nil {
		return nil, nil, err
	}
	zr, err := zstd.NewReader(f, zstd.WithDecoderConcurrency(1))
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	return zr, func() { zr.Close(); f.Close() }, nil
}

// countRows decodes a rows file to its end and counts the rows.
func countRows(dir string, t backupfile.Table, th *throttle) (int64, error) {
	r, closeFn, err := openRows(dir, t)
	if err != nil {
		return 0, err
	}
	defer closeFn()
	var n int64
	switch t.Encoding {
	case backupfile.EncodingPGText:
		buf := make([]byte, 256<<10)
		var last byte
		for {
			k, err := r.Read(buf)
			if k > 0 {
				n += int64(bytes.Count(buf[:k], []byte{'\n'}))
				last = buf[k-1]
				if err := th.report(n, false); err != nil {
					return n, err
				}
			}
			if err == io.EOF {
				break
			}
			if err != nil {
				return n, fmt.Errorf("decompress: %v", err)
			}
		}
		if n > 0 && last != '\n' {
			return n, errors.New("the rows stream ends in the middle of a row")
		}
	case backupfile.EncodingSQLiteValues:
		d := &valueReader{r: bufio.NewReaderSize(r, 256<<10), cols: len(t.Columns)}
		row := make([]any, len(t.Columns))
		for {
			err := d.next(row)
			if err == io.EOF {
				break
			}
			if err != nil {
				return n, fmt.Errorf("after row %d: %v", n, err)
			}
			n++
			if n%4096 == 0 {
				if err := th.report(n, false); err != nil {
					return n, err
				}
			}
		}
	default:
		return 0, fmt.Errorf("unknown encoding %q", t.Encoding)
	}
	return n, nil
}

// lineReader counts COPY text rows as they are read.
type lineReader struct {
	r    io.Reader
	rows int64
	th   *throttle
}

func (c *lineReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.rows += int64(bytes.Count(p[:n], []byte{'\n'}))
	if rerr := c.th.report(c.rows, false); rerr != nil {
		return n, rerr
	}
	return n, err
}

func loadPG(ctx context.Context, conn *sql.Conn, dir string, bt backupfile.Table, th *throttle) (int64, error) {
	r, closeFn, err := openRows(dir, bt)
	if err != nil {
		return 0, err
	}
	defer closeFn()
	lr := &lineReader{r: r, th: th}
	var tag pgconn.CommandTag
	err = withPG(conn, func(pc *pgconn.PgConn) error {
		var err error
		tag, err = pc.CopyFrom(ctx, lr, fmt.Sprintf("COPY %s (%s) FROM STDIN", quoteIdent(bt.Name), quoteIdents(bt.Columns)))
		return err
	})
	if err != nil {
		return 0, err
	}
	return tag.RowsAffected(), nil
}

// sqliteMaxVars stays under SQLite's default limit of bound variables.
const sqliteMaxVars = 32000

func loadSQLite(ctx context.Context, tx *gorm.DB, dir string, bt backupfile.Table, th *throttle) (int64, error) {
	r, closeFn, err := openRows(dir, bt)
	if err != nil {
		return 0, err
	}
	defer closeFn()
	sqlTx, ok := tx.Statement.ConnPool.(*sql.Tx)
	if !ok {
		return 0, fmt.Errorf("restore needs a transaction, got %T", tx.Statement.ConnPool)
	}
	ncol := len(bt.Columns)
	batch := max(1, min(256, sqliteMaxVars/ncol))
	one := "(" + strings.TrimSuffix(strings.Repeat("?, ", ncol), ", ") + ")"
	head := fmt.Sprintf("INSERT INTO %s (%s) VALUES ", quoteIdent(bt.Name), quoteIdents(bt.Columns))
	stmtFor := func(rows int) string {
		return head + strings.TrimSuffix(strings.Repeat(one+", ", rows), ", ")
	}
	full, err := sqlTx.PrepareContext(ctx, stmtFor(batch))
	if err != nil {
		return 0, err
	}
	defer full.Close()
	d := &valueReader{r: bufio.NewReaderSize(r, 256<<10), cols: ncol}
	args := make([]any, 0, batch*ncol)
	row := make([]any, ncol)
	var n int64
	flush := func() error {
		if len(args) == 0 {
			return nil
		}
		var err error
		if len(args) == batch*ncol {
			_, err = full.ExecContext(ctx, args...)
		} else {
			_, err = sqlTx.ExecContext(ctx, stmtFor(len(args)/ncol), args...)
		}
		args = args[:0]
		return err
	}
	for {
		err := d.next(row)
		if err == io.EOF {
			break
		}
		if err != nil {
			return n, fmt.Errorf("%w: %s: after row %d: %v", backupfile.ErrInvalid, bt.RowsFile, n, err)
		}
		args = append(args, row...)
		n++
		if len(args) == batch*ncol {
			if err := flush(); err != nil {
				return n, err
			}
			if err := th.report(n, false); err != nil {
				return n, err
			}
		}
	}
	return n, flush()
}
