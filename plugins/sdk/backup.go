package sdk

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
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/klauspost/compress/zstd"
	"gorm.io/gorm"

	"github.com/packhost/packhost/internal/backupfile"
	"github.com/packhost/packhost/internal/meta"
	"github.com/packhost/packhost/internal/packerr"
	"github.com/packhost/packhost/internal/packpb"
	"github.com/packhost/packhost/internal/schema"
)

// Backups are made and read by the pack, which owns the connection; the
// host only picks the directory. The format is internal/backupfile's.
//
// Backup, in one read-only snapshot of the database:
//
//  1. For each requested table at an installed version: its schema text,
//     its column list and every row, streamed through zstd to
//     <table>.rows.zst (PostgreSQL: COPY ... TO STDOUT in text format;
//     SQLite: a streaming SELECT written as typed values), and the state
//     of its sequences.
//  2. The pack's pack_settings rows and the schema_registry rows of the
//     tables.
//  3. manifest.json last, with each file's size and sha256 and each
//     table's row count.
//
// Memory stays constant whatever the table size: rows go from the
// database to the file through fixed buffers.
//
// Restore:
//
//  1. Verify: the manifest, every file's sha256, and every rows file
//     decoded to the end and counted against the manifest. A backup of
//     another pack, another dialect or a newer table version is refused.
//     Any failure is ErrBackupInvalid and nothing is touched.
//  2. In one transaction: drop the backed-up tables, rebuild each at its
//     backed-up version with the pack's own steps (or Create, at the code
//     version), check the rebuilt schema equals the backed-up one, load
//     the rows (PostgreSQL: COPY ... FROM STDIN), set the sequences, and
//     put back the pack's pack_settings rows and the tables'
//     schema_registry rows exactly.
//  3. Check every restored table is ok or outdated (restored under newer
//     code); otherwise roll everything back.

// progressEvery is how often, at most, row progress is streamed.
const progressEvery = 250 * time.Millisecond

// throttle streams row progress for one table at most every progressEvery.
type throttle struct {
	send  func(*packpb.Progress) error
	table string
	msg   string
	total int64
	last  time.Time
}

func (t *throttle) report(done int64, force bool) error {
	if !force && time.Since(t.last) < progressEvery {
		return nil
	}
	t.last = time.Now()
	return t.send(&packpb.Progress{Table: t.table, Current: done, Total: t.total, Message: t.msg})
}

// onConn returns a gorm handle whose every statement runs on conn.
func onConn(ctx context.Context, db *gorm.DB, conn *sql.Conn) *gorm.DB {
	s := db.Session(&gorm.Session{NewDB: true, Context: ctx})
	s.Statement.ConnPool = conn
	return s
}

// withPG runs f with the pgx connection behind conn.
func withPG(conn *sql.Conn, f func(*pgconn.PgConn) error) error {
	return conn.Raw(func(dc any) error {
		c, ok := dc.(*stdlib.Conn)
		if !ok {
			return fmt.Errorf("the postgres driver connection is %T, not pgx; COPY is not available", dc)
		}
		return f(c.Conn().PgConn())
	})
}

func quoteIdent(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }

func quoteIdents(names []string) string {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = quoteIdent(n)
	}
	return strings.Join(q, ", ")
}

// backup writes the requested tables (all when none) to req.Dir.
func (r *runtime) backup(ctx context.Context, req *packpb.BackupRequest, send func(*packpb.Progress) error) (err error) {
	tables, err := r.tables(req.GetTables())
	if err != nil {
		return err
	}
	dir := req.GetDir()
	if err := checkEmptyDir(dir); err != nil {
		return &packerr.Error{Code: packpb.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, PackID: r.pack.ID,
			Msg: fmt.Sprintf("backup pack %s: %v", r.pack.ID, err)}
	}
	db, err := r.database()
	if err != nil {
		return err
	}
	sqlDB, err := db.DB()
	if err != nil {
		return err
	}
	conn, err := sqlDB.Conn(ctx)
	if err != nil {
		return fmt.Errorf("backup pack %s: connect: %w", r.pack.ID, err)
	}
	defer conn.Close()
	dialect := db.Dialector.Name()
	// One snapshot for everything: rows, versions, settings and registry
	// agree with each other. On SQLite a deferred BEGIN reads a snapshot
	// without taking the write lock, so other processes keep writing.
	begin := "BEGIN"
	if dialect == "postgres" {
		begin = "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"
	}
	if _, err := conn.ExecContext(ctx, begin); err != nil {
		return fmt.Errorf("backup pack %s: begin snapshot: %w", r.pack.ID, err)
	}
	defer func() {
		end := "COMMIT"
		if err != nil {
			end = "ROLLBACK"
		}
		if _, cerr := conn.ExecContext(context.WithoutCancel(ctx), end); cerr != nil && err == nil {
			err = fmt.Errorf("backup pack %s: end snapshot: %w", r.pack.ID, cerr)
		}
	}()
	g := onConn(ctx, db, conn)

	m := &backupfile.Manifest{
		Format: backupfile.Format, PackID: r.pack.ID, PackVer: r.pack.Version, SDKVersion: Version,
		Dialect: dialect, CreatedAt: req.GetCreatedAt(), Files: map[string]backupfile.FileSum{},
	}
	backedUp := map[string]bool{}
	for _, t := range tables {
		version, err := meta.InstalledVersion(ctx, g, r.pack.ID, t.Name)
		if err != nil {
			return err
		}
		if version == 0 {
			m.Skipped = append(m.Skipped, t.Name)
			continue
		}
		bt, err := r.backupTable(ctx, g, conn, dir, t.Name, version, m, send)
		if err != nil {
			return fmt.Errorf("backup pack %s: table %s: %w", r.pack.ID, t.Name, err)
		}
		m.Tables = append(m.Tables, *bt)
		backedUp[t.Name] = true
	}
	if err := r.backupMeta(ctx, g, dir, backedUp, m); err != nil {
		return fmt.Errorf("backup pack %s: %w", r.pack.ID, err)
	}
	if err := backupfile.WriteManifest(dir, m); err != nil {
		return fmt.Errorf("backup pack %s: %w", r.pack.ID, err)
	}
	var rows int64
	for _, t := range m.Tables {
		rows += t.Rows
	}
	return send(&packpb.Progress{Done: true, Current: rows, Total: rows,
		Message: fmt.Sprintf("%d table(s), %d row(s) backed up", len(m.Tables), rows)})
}

func checkEmptyDir(dir string) error {
	if !filepath.IsAbs(dir) {
		return fmt.Errorf("backup directory %q is not an absolute path", dir)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("backup directory: %w", err)
	}
	if len(entries) > 0 {
		return fmt.Errorf("backup directory %s is not empty", dir)
	}
	return nil
}

func (r *runtime) backupTable(ctx context.Context, g *gorm.DB, conn *sql.Conn, dir, table string, version int,
	m *backupfile.Manifest, send func(*packpb.Progress) error) (*backupfile.Table, error) {
	text, exists, err := schema.Describe(ctx, g, table)
	if err != nil {
		return nil, err
	}
	if !exists {
		return nil, fmt.Errorf("version %d is recorded but the table does not exist; run `host status`", version)
	}
	cols, err := columnsOf(ctx, g, table)
	if err != nil {
		return nil, err
	}
	var total int64
	if err := g.Raw("SELECT count(*) FROM " + quoteIdent(table)).Scan(&total).Error; err != nil {
		return nil, fmt.Errorf("count rows: %w", err)
	}
	bt := &backupfile.Table{
		Name: table, Version: version, Columns: cols,
		SchemaFile: backupfile.SchemaFileName(table), RowsFile: backupfile.RowsFileName(table),
		Compression: backupfile.CompressionZstd,
	}
	if err := backupfile.WriteFile(dir, bt.SchemaFile, []byte(text), m); err != nil {
		return nil, err
	}
	w, err := backupfile.Create(dir, bt.RowsFile)
	if err != nil {
		return nil, err
	}
	zw, err := zstd.NewWriter(w, zstd.WithEncoderLevel(zstd.SpeedFastest))
	if err != nil {
		w.Abort()
		return nil, err
	}
	bw := bufio.NewWriterSize(zw, 256<<10)
	th := &throttle{send: send, table: table, msg: "backing up", total: total}
	if err := th.report(0, true); err != nil {
		w.Abort()
		return nil, err
	}
	switch g.Dialector.Name() {
	case "postgres":
		bt.Encoding = backupfile.EncodingPGText
		bt.Rows, err = dumpPG(ctx, conn, table, cols, bw, th)
	default:
		bt.Encoding = backupfile.EncodingSQLiteValues
		bt.Rows, err = dumpSQLite(ctx, g, table, cols, bw, th)
	}
	if err == nil {
		err = bw.Flush()
	}
	if err == nil {
		err = zw.Close()
	}
	if err != nil {
		w.Abort()
		return nil, err
	}
	if err := w.Close(m); err != nil {
		return nil, err
	}
	if err := th.report(bt.Rows, true); err != nil {
		return nil, err
	}
	if bt.Sequences, err = sequencesOf(ctx, g, table, cols); err != nil {
		return nil, err
	}
	return bt, nil
}

// columnsOf lists the table's stored columns in their physical order
// (generated columns are left out: the database computes them again).
func columnsOf(ctx context.Context, g *gorm.DB, table string) ([]string, error) {
	var cols []string
	var err error
	switch g.Dialector.Name() {
	case "postgres":
		err = g.Raw(`SELECT column_name FROM information_schema.columns
			WHERE table_schema = current_schema() AND table_name = ? AND is_generated = 'NEVER'
			ORDER BY ordinal_position`, table).Scan(&cols).Error
	default:
		err = g.Raw(`SELECT name FROM pragma_table_xinfo(?) WHERE hidden = 0 ORDER BY cid`, table).Scan(&cols).Error
	}
	if err != nil {
		return nil, fmt.Errorf("list columns: %w", err)
	}
	if len(cols) == 0 {
		return nil, errors.New("the table has no columns to back up")
	}
	return cols, nil
}

// sequencesOf reads the state of the sequences behind the table's columns.
func sequencesOf(ctx context.Context, g *gorm.DB, table string, cols []string) ([]backupfile.Sequence, error) {
	var out []backupfile.Sequence
	if g.Dialector.Name() == "postgres" {
		for _, c := range cols {
			var seq sql.NullString
			if err := g.Raw(`SELECT pg_get_serial_sequence(?, ?)`, quoteIdent(table), c).Scan(&seq).Error; err != nil {
				return nil, fmt.Errorf("find sequence of %s: %w", c, err)
			}
			if !seq.Valid {
				continue
			}
			var st struct {
				LastValue int64
				IsCalled  bool
			}
			if err := g.Raw(`SELECT last_value, is_called FROM ` + seq.String).Scan(&st).Error; err != nil {
				return nil, fmt.Errorf("read sequence %s: %w", seq.String, err)
			}
			out = append(out, backupfile.Sequence{Column: c, LastValue: st.LastValue, IsCalled: st.IsCalled})
		}
		return out, nil
	}
	var has int64
	if err := g.Raw(`SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'sqlite_sequence'`).Scan(&has).Error; err != nil {
		return nil, fmt.Errorf("read sqlite_sequence: %w", err)
	}
	if has == 0 {
		return nil, nil
	}
	var seqs []int64
	if err := g.Raw(`SELECT seq FROM sqlite_sequence WHERE name = ?`, table).Scan(&seqs).Error; err != nil {
		return nil, fmt.Errorf("read sqlite_sequence: %w", err)
	}
	for _, s := range seqs {
		out = append(out, backupfile.Sequence{LastValue: s, IsCalled: true})
	}
	return out, nil
}

// backupMeta writes the pack's settings (leaving out the version keys of
// the pack's tables that are not in the backup) and the registry rows of
// the backed-up tables.
func (r *runtime) backupMeta(ctx context.Context, g *gorm.DB, dir string, tables map[string]bool, m *backupfile.Manifest) error {
	var settings []meta.Setting
	var regs []meta.Registration
	if meta.Present(ctx, g) {
		if err := g.Where("pack_id = ?", r.pack.ID).Order("key").Find(&settings).Error; err != nil {
			return fmt.Errorf("read pack_settings: %w", err)
		}
		if len(tables) > 0 {
			names := make([]string, 0, len(tables))
			for n := range tables {
				names = append(names, n)
			}
			if err := g.Where("table_name IN ?", names).Order("table_name, table_version").Find(&regs).Error; err != nil {
				return fmt.Errorf("read schema_registry: %w", err)
			}
		}
	}
	outS := []backupfile.Setting{}
	for _, s := range settings {
		if t, ok := strings.CutPrefix(s.Key, meta.VersionKeyPrefix); ok && !tables[t] {
			if _, owned := r.pack.table(t); owned {
				continue
			}
		}
		outS = append(outS, backupfile.Setting{PackID: s.PackID, Key: s.Key, Value: s.Value, UpdatedAt: s.UpdatedAt})
	}
	outR := []backupfile.Registration{}
	for _, x := range regs {
		outR = append(outR, backupfile.Registration{TableName: x.TableName_, TableVersion: x.TableVersion,
			PackID: x.PackID, SchemaText: x.SchemaText, CreatedAt: x.CreatedAt})
	}
	m.SettingsRows, m.RegistryRows = len(outS), len(outR)
	if err := backupfile.WriteJSON(dir, backupfile.SettingsFile, outS, m); err != nil {
		return err
	}
	return backupfile.WriteJSON(dir, backupfile.RegistryFile, outR, m)
}

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
			b := make([]byte, n)
			if _, err := io.ReadFull(d.r, b); err != nil {
				return fmt.Errorf("value cut short: %w", err)
			}
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

// loaded is a verified backup, ready to restore.
type loaded struct {
	dir      string
	m        *backupfile.Manifest
	schemas  map[string]string
	settings []backupfile.Setting
	regs     []backupfile.Registration
}

// invalidBackup gives a verification failure its wire identity.
func (r *runtime) invalidBackup(dir string, err error) error {
	if !errors.Is(err, backupfile.ErrInvalid) {
		return err
	}
	msg := strings.Replace(err.Error(), backupfile.ErrInvalid.Error()+": ", "", 1)
	return &packerr.Error{Code: packpb.ErrorCode_ERROR_CODE_BACKUP_INVALID, PackID: r.pack.ID,
		Msg: fmt.Sprintf("backup %s is refused: %s; nothing was restored", dir, msg)}
}

// verify checks the backup in dir completely, reading every file.
func (r *runtime) verify(ctx context.Context, dir, dialect string, send func(*packpb.Progress) error) (*loaded, error) {
	if !filepath.IsAbs(dir) {
		return nil, &packerr.Error{Code: packpb.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, PackID: r.pack.ID,
			Msg: fmt.Sprintf("restore: backup directory %q is not an absolute path", dir)}
	}
	m, err := backupfile.ReadManifest(dir)
	if err != nil {
		return nil, err
	}
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: %s", backupfile.ErrInvalid, fmt.Sprintf(format, a...))
	}
	if m.PackID != r.pack.ID {
		return nil, bad("it is a backup of pack %s, not of %s", m.PackID, r.pack.ID)
	}
	if m.Dialect != dialect {
		return nil, bad("it was taken from a %s database and this database is %s", m.Dialect, dialect)
	}
	for _, bt := range m.Tables {
		t, ok := r.pack.table(bt.Name)
		if !ok {
			return nil, bad("table %s is not a table of pack %s %s", bt.Name, r.pack.ID, r.pack.Version)
		}
		if bt.Version > t.Version() {
			return nil, bad("table %s is at version %d in the backup but pack %s %s knows versions up to %d; restore it with the release it was taken with (%s)",
				bt.Name, bt.Version, r.pack.ID, r.pack.Version, t.Version(), m.PackVer)
		}
	}
	if err := send(&packpb.Progress{Message: "verifying checksums"}); err != nil {
		return nil, err
	}
	if err := backupfile.VerifyFiles(dir, m); err != nil {
		return nil, err
	}
	l := &loaded{dir: dir, m: m, schemas: map[string]string{}}
	for _, bt := range m.Tables {
		b, err := os.ReadFile(filepath.Join(dir, bt.SchemaFile))
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", bt.SchemaFile, err)
		}
		l.schemas[bt.Name] = string(b)
		th := &throttle{send: send, table: bt.Name, msg: "verifying", total: bt.Rows}
		n, err := countRows(dir, bt, th)
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			return nil, bad("%s: %v", bt.RowsFile, err)
		}
		if n != bt.Rows {
			return nil, bad("%s holds %d rows, the manifest says %d", bt.RowsFile, n, bt.Rows)
		}
		if err := th.report(n, true); err != nil {
			return nil, err
		}
	}
	if err := backupfile.ReadJSON(dir, backupfile.SettingsFile, &l.settings); err != nil {
		return nil, err
	}
	if len(l.settings) != m.SettingsRows {
		return nil, bad("%s holds %d rows, the manifest says %d", backupfile.SettingsFile, len(l.settings), m.SettingsRows)
	}
	for _, s := range l.settings {
		if s.PackID != r.pack.ID {
			return nil, bad("%s holds a setting of pack %q", backupfile.SettingsFile, s.PackID)
		}
	}
	if err := backupfile.ReadJSON(dir, backupfile.RegistryFile, &l.regs); err != nil {
		return nil, err
	}
	if len(l.regs) != m.RegistryRows {
		return nil, bad("%s holds %d rows, the manifest says %d", backupfile.RegistryFile, len(l.regs), m.RegistryRows)
	}
	inBackup := map[string]bool{}
	for _, bt := range m.Tables {
		inBackup[bt.Name] = true
	}
	for _, x := range l.regs {
		if !inBackup[x.TableName] {
			return nil, bad("%s holds a row for table %s, which is not in the backup", backupfile.RegistryFile, x.TableName)
		}
	}
	return l, nil
}

// restore verifies the backup in req.Dir, then brings it back in one
// transaction.
func (r *runtime) restore(ctx context.Context, req *packpb.RestoreRequest, send func(*packpb.Progress) error) error {
	db, err := r.database()
	if err != nil {
		return err
	}
	dir := req.GetDir()
	l, err := r.verify(ctx, dir, db.Dialector.Name(), send)
	if err != nil {
		return r.invalidBackup(dir, err)
	}
	if req.GetVerifyOnly() {
		return send(&packpb.Progress{Done: true, Message: fmt.Sprintf("backup %s verified: %d table(s)", dir, len(l.m.Tables))})
	}
	sqlDB, err := db.DB()
	if err != nil {
		return err
	}
	conn, err := sqlDB.Conn(ctx)
	if err != nil {
		return fmt.Errorf("restore pack %s: connect: %w", r.pack.ID, err)
	}
	defer conn.Close()
	g := onConn(ctx, db, conn)
	r.log.Info("restoring backup", "dir", dir, "tables", len(l.m.Tables))
	err = g.Transaction(func(tx *gorm.DB) error {
		return r.restoreTx(ctx, tx, conn, l, send)
	})
	if err != nil {
		if errors.Is(err, backupfile.ErrInvalid) {
			return r.invalidBackup(dir, err)
		}
		var pe *packerr.Error
		if errors.As(err, &pe) {
			return err
		}
		return fmt.Errorf("restore pack %s from %s: %w; the transaction was rolled back, nothing was restored", r.pack.ID, dir, err)
	}
	var rows int64
	for _, t := range l.m.Tables {
		rows += t.Rows
	}
	return send(&packpb.Progress{Done: true, Current: rows, Total: rows,
		Message: fmt.Sprintf("%d table(s), %d row(s) restored", len(l.m.Tables), rows)})
}

func (r *runtime) restoreTx(ctx context.Context, tx *gorm.DB, conn *sql.Conn, l *loaded, send func(*packpb.Progress) error) error {
	if !meta.Present(ctx, tx) {
		if err := meta.Ensure(ctx, tx); err != nil {
			return err
		}
	}
	// Drop in reverse order first, so tables that reference earlier ones
	// go before them.
	for i := len(l.m.Tables) - 1; i >= 0; i-- {
		if err := tx.Exec("DROP TABLE IF EXISTS " + quoteIdent(l.m.Tables[i].Name)).Error; err != nil {
			return fmt.Errorf("drop table %s: %w", l.m.Tables[i].Name, err)
		}
	}
	for _, bt := range l.m.Tables {
		t, _ := r.pack.table(bt.Name)
		if err := send(&packpb.Progress{Table: bt.Name, To: int32(bt.Version), Total: bt.Rows,
			Message: fmt.Sprintf("rebuilding %s at version %d", bt.Name, bt.Version)}); err != nil {
			return err
		}
		if err := r.rebuild(ctx, tx, t, bt.Version); err != nil {
			return fmt.Errorf("rebuild table %s at version %d: %w", bt.Name, bt.Version, err)
		}
		live, _, err := schema.Describe(ctx, tx, bt.Name)
		if err != nil {
			return err
		}
		if want := l.schemas[bt.Name]; live != want {
			diff, _ := schema.Diff(want, live)
			return fmt.Errorf("table %s rebuilt at version %d by pack %s %s does not match the backed-up schema (the table had been changed by hand when it was backed up?):\n%s",
				bt.Name, bt.Version, r.pack.ID, r.pack.Version, diff)
		}
		th := &throttle{send: send, table: bt.Name, msg: "restoring", total: bt.Rows}
		// Indexes are built once after the load, as pg_restore does,
		// instead of being updated row by row.
		indexes, err := dropIndexes(ctx, tx, bt.Name)
		if err != nil {
			return fmt.Errorf("table %s: %w", bt.Name, err)
		}
		start := time.Now()
		var n int64
		switch bt.Encoding {
		case backupfile.EncodingPGText:
			n, err = loadPG(ctx, conn, l.dir, bt, th)
		default:
			n, err = loadSQLite(ctx, tx, l.dir, bt, th)
		}
		if err != nil {
			return fmt.Errorf("load rows of %s: %w", bt.Name, err)
		}
		loaded := time.Since(start)
		if err := th.send(&packpb.Progress{Table: bt.Name, Current: n, Total: bt.Rows,
			Message: fmt.Sprintf("building %d index(es)", len(indexes))}); err != nil {
			return err
		}
		if len(indexes) > 0 && tx.Dialector.Name() == "postgres" {
			// Sorting a large table's keys in memory instead of in
			// temporary files; SET LOCAL ends with the transaction.
			if err := tx.Exec(`SELECT set_config('maintenance_work_mem', '256MB', true)
				WHERE current_setting('maintenance_work_mem')::text NOT LIKE '%GB'
				AND pg_size_bytes(current_setting('maintenance_work_mem')) < 256 * 1024 * 1024`).Error; err != nil {
				return fmt.Errorf("table %s: %w", bt.Name, err)
			}
		}
		for _, stmt := range indexes {
			if err := tx.Exec(stmt).Error; err != nil {
				return fmt.Errorf("table %s: rebuild index: %s: %w", bt.Name, stmt, err)
			}
		}
		r.log.Info("table restored", "table", bt.Name, "rows", n, "load", loaded.Round(time.Millisecond),
			"indexes", time.Since(start.Add(loaded)).Round(time.Millisecond))
		if n != bt.Rows {
			return fmt.Errorf("%w: %s: %d rows loaded, the manifest says %d", backupfile.ErrInvalid, bt.RowsFile, n, bt.Rows)
		}
		if err := th.report(n, true); err != nil {
			return err
		}
		if err := setSequences(ctx, tx, bt); err != nil {
			return fmt.Errorf("table %s: %w", bt.Name, err)
		}
	}
	if err := r.restoreMeta(ctx, tx, l); err != nil {
		return err
	}
	for _, bt := range l.m.Tables {
		t, _ := r.pack.table(bt.Name)
		st, err := r.checkTable(ctx, tx, t)
		if err != nil {
			return err
		}
		switch st.State {
		case packpb.TableState_TABLE_STATE_OK, packpb.TableState_TABLE_STATE_OUTDATED:
		default:
			return fmt.Errorf("table %s would be in state %s after the restore (%s)", bt.Name, st.State, st.Detail)
		}
	}
	return nil
}

// rebuild makes an empty table at version with the pack's own code: Create
// when the version is the code version and the table has one, otherwise
// every step up to it. Rows a step may seed are removed: the backup holds
// every row.
func (r *runtime) rebuild(ctx context.Context, tx *gorm.DB, t Table, version int) error {
	if version == t.Version() && t.Create != nil {
		if err := t.Create(ctx, tx); err != nil {
			return err
		}
	} else {
		for i := 0; i < version; i++ {
			if err := t.Steps[i].Up(ctx, tx); err != nil {
				return fmt.Errorf("step %d -> %d: %w", i, i+1, err)
			}
		}
	}
	return tx.Exec("DELETE FROM " + quoteIdent(t.Name)).Error
}

// dropIndexes drops the secondary indexes and the primary key and unique
// constraints of a freshly rebuilt, empty table and returns the statements
// that make them again. Tables that other tables reference, and SQLite
// indexes the database made itself (autoindexes), are left alone.
func dropIndexes(ctx context.Context, tx *gorm.DB, table string) ([]string, error) {
	type def struct{ Name, Def string }
	var again []string
	if tx.Dialector.Name() == "postgres" {
		var referenced int64
		if err := tx.Raw(`SELECT count(*) FROM pg_constraint WHERE confrelid = ?::regclass`, quoteIdent(table)).Scan(&referenced).Error; err != nil {
			return nil, fmt.Errorf("list foreign keys: %w", err)
		}
		if referenced > 0 {
			return nil, nil
		}
		var cons, idx []def
		if err := tx.Raw(`SELECT conname AS name, pg_get_constraintdef(oid) AS def FROM pg_constraint
			WHERE conrelid = ?::regclass AND contype IN ('p', 'u') ORDER BY conname`, quoteIdent(table)).Scan(&cons).Error; err != nil {
			return nil, fmt.Errorf("list constraints: %w", err)
		}
		if err := tx.Raw(`SELECT c.relname AS name, pg_get_indexdef(c.oid) AS def FROM pg_index x JOIN pg_class c ON c.oid = x.indexrelid
			WHERE x.indrelid = ?::regclass AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = x.indexrelid)
			ORDER BY c.relname`, quoteIdent(table)).Scan(&idx).Error; err != nil {
			return nil, fmt.Errorf("list indexes: %w", err)
		}
		for _, c := range cons {
			if err := tx.Exec(fmt.Sprintf("ALTER TABLE %s DROP CONSTRAINT %s", quoteIdent(table), quoteIdent(c.Name))).Error; err != nil {
				return nil, fmt.Errorf("drop constraint %s: %w", c.Name, err)
			}
			again = append(again, fmt.Sprintf("ALTER TABLE %s ADD CONSTRAINT %s %s", quoteIdent(table), quoteIdent(c.Name), c.Def))
		}
		for _, i := range idx {
			if err := tx.Exec("DROP INDEX " + quoteIdent(i.Name)).Error; err != nil {
				return nil, fmt.Errorf("drop index %s: %w", i.Name, err)
			}
			again = append(again, i.Def)
		}
		return again, nil
	}
	var idx []def
	if err := tx.Raw(`SELECT name, sql AS def FROM sqlite_master WHERE type = 'index' AND tbl_name = ? AND sql IS NOT NULL ORDER BY name`, table).Scan(&idx).Error; err != nil {
		return nil, fmt.Errorf("list indexes: %w", err)
	}
	for _, i := range idx {
		if err := tx.Exec("DROP INDEX " + quoteIdent(i.Name)).Error; err != nil {
			return nil, fmt.Errorf("drop index %s: %w", i.Name, err)
		}
		again = append(again, i.Def)
	}
	return again, nil
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

func setSequences(ctx context.Context, tx *gorm.DB, bt backupfile.Table) error {
	for _, s := range bt.Sequences {
		if tx.Dialector.Name() == "postgres" {
			var seq sql.NullString
			if err := tx.Raw(`SELECT pg_get_serial_sequence(?, ?)`, quoteIdent(bt.Name), s.Column).Scan(&seq).Error; err != nil {
				return fmt.Errorf("find sequence of %s: %w", s.Column, err)
			}
			if !seq.Valid {
				return fmt.Errorf("column %s had a sequence when it was backed up but has none now", s.Column)
			}
			if err := tx.Exec(`SELECT setval(?::regclass, ?, ?)`, seq.String, s.LastValue, s.IsCalled).Error; err != nil {
				return fmt.Errorf("set sequence %s: %w", seq.String, err)
			}
			continue
		}
		if err := tx.Exec(`DELETE FROM sqlite_sequence WHERE name = ?`, bt.Name).Error; err != nil {
			return fmt.Errorf("set sqlite_sequence: %w", err)
		}
		if err := tx.Exec(`INSERT INTO sqlite_sequence (name, seq) VALUES (?, ?)`, bt.Name, s.LastValue).Error; err != nil {
			return fmt.Errorf("set sqlite_sequence: %w", err)
		}
	}
	return nil
}

// restoreMeta replaces the pack's settings (keeping the version keys of
// its tables that are not in the backup) and the registry rows of the
// restored tables with the backup's rows.
func (r *runtime) restoreMeta(ctx context.Context, tx *gorm.DB, l *loaded) error {
	inBackup := map[string]bool{}
	names := []string{}
	for _, bt := range l.m.Tables {
		inBackup[bt.Name] = true
		names = append(names, bt.Name)
	}
	keep := []string{}
	for _, t := range r.pack.Tables {
		if !inBackup[t.Name] {
			keep = append(keep, meta.VersionKey(t.Name))
		}
	}
	q := tx.Where("pack_id = ?", r.pack.ID)
	if len(keep) > 0 {
		q = q.Where("key NOT IN ?", keep)
	}
	if err := q.Delete(&meta.Setting{}).Error; err != nil {
		return fmt.Errorf("clear pack_settings of %s: %w", r.pack.ID, err)
	}
	if len(names) > 0 {
		if err := tx.Where("table_name IN ?", names).Delete(&meta.Registration{}).Error; err != nil {
			return fmt.Errorf("clear schema_registry: %w", err)
		}
	}
	for _, s := range l.settings {
		if t, ok := strings.CutPrefix(s.Key, meta.VersionKeyPrefix); ok && !inBackup[t] {
			if _, owned := r.pack.table(t); owned {
				continue
			}
		}
		row := meta.Setting{PackID: s.PackID, Key: s.Key, Value: s.Value, UpdatedAt: s.UpdatedAt}
		if err := tx.Create(&row).Error; err != nil {
			return fmt.Errorf("restore pack setting %s: %w", s.Key, err)
		}
	}
	for _, x := range l.regs {
		row := meta.Registration{TableName_: x.TableName, TableVersion: x.TableVersion, PackID: x.PackID,
			SchemaText: x.SchemaText, CreatedAt: x.CreatedAt}
		if err := tx.Create(&row).Error; err != nil {
			return fmt.Errorf("restore schema_registry row %s v%d: %w", x.TableName, x.TableVersion, err)
		}
	}
	return nil
}
