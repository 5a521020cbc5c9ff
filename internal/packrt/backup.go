package packrt

import (
	"bufio"
	"context"
	"database/sql"
	"errors"
	"fmt"
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
		Format: backupfile.Format, PackID: r.pack.ID, PackVer: r.pack.Version, SDKVersion: SDKVersion,
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
	if bt.Definition, err = schema.Define(ctx, g, table); err != nil {
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
	settings, err := meta.PackSettings(ctx, g, r.pack.ID)
	if err != nil {
		return err
	}
	names := make([]string, 0, len(tables))
	for n := range tables {
		names = append(names, n)
	}
	regs, err := meta.Registrations(ctx, g, r.pack.ID, names)
	if err != nil {
		return err
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
