package packrt

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"gorm.io/gorm"

	"github.com/packhost/packhost/internal/backupfile"
	"github.com/packhost/packhost/internal/meta"
	"github.com/packhost/packhost/internal/packerr"
	"github.com/packhost/packhost/internal/packpb"
	"github.com/packhost/packhost/internal/schema"
)

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
func (r *runtime) verify(ctx context.Context, dir, dialect string, asItWas bool, send func(*packpb.Progress) error) (*loaded, error) {
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
		if bt.Version > t.Version() && !(asItWas && bt.Definition != nil) {
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
	l, err := r.verify(ctx, dir, db.Dialector.Name(), req.GetAsItWas(), send)
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
	var foreignKeys []string
	for _, bt := range l.m.Tables {
		if err := send(&packpb.Progress{Table: bt.Name, To: int32(bt.Version), Total: bt.Rows,
			Message: fmt.Sprintf("making %s at version %d", bt.Name, bt.Version)}); err != nil {
			return err
		}
		// The table is made from the backup's own definition; a backup of
		// the first format has none, and its table is rebuilt with the
		// pack's steps, then its indexes dropped to be made after the
		// load, as pg_restore does.
		var indexes []string
		if d := bt.Definition; d != nil {
			for _, stmt := range d.Create {
				if err := tx.Exec(stmt).Error; err != nil {
					return fmt.Errorf("make table %s from the backup's definition: %s: %w", bt.Name, stmt, err)
				}
			}
			indexes, foreignKeys = d.Indexes, append(foreignKeys, d.ForeignKeys...)
		} else {
			t, _ := r.pack.table(bt.Name)
			if err := r.rebuild(ctx, tx, t, bt.Version); err != nil {
				return fmt.Errorf("rebuild table %s at version %d: %w", bt.Name, bt.Version, err)
			}
			if err := r.sameSchema(ctx, tx, l, bt, "rebuilt at version "+fmt.Sprint(bt.Version)+" by pack "+r.pack.ID+" "+r.pack.Version); err != nil {
				return err
			}
			var err error
			if indexes, err = dropIndexes(ctx, tx, bt.Name); err != nil {
				return fmt.Errorf("table %s: %w", bt.Name, err)
			}
		}
		th := &throttle{send: send, table: bt.Name, msg: "restoring", total: bt.Rows}
		start := time.Now()
		var n int64
		var err error
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
				return fmt.Errorf("table %s: make index: %s: %w", bt.Name, stmt, err)
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
	for _, stmt := range foreignKeys {
		if err := tx.Exec(stmt).Error; err != nil {
			return fmt.Errorf("make foreign key: %s: %w", stmt, err)
		}
	}
	for _, bt := range l.m.Tables {
		if err := r.sameSchema(ctx, tx, l, bt, "made from the backup"); err != nil {
			return err
		}
	}
	if err := r.restoreMeta(ctx, tx, l); err != nil {
		return err
	}
	// A table made from its backed-up definition is exactly as it was,
	// whatever state that was (a rollback puts back even a conflict that
	// was there before); one rebuilt with the pack's steps must be in a
	// state the code can go on from.
	for _, bt := range l.m.Tables {
		if bt.Definition != nil {
			continue
		}
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

// sameSchema checks that the table restored from bt has the schema the
// backup recorded.
func (r *runtime) sameSchema(ctx context.Context, tx *gorm.DB, l *loaded, bt backupfile.Table, how string) error {
	live, _, err := schema.Describe(ctx, tx, bt.Name)
	if err != nil {
		return err
	}
	if want := l.schemas[bt.Name]; live != want {
		diff, _ := schema.Diff(want, live)
		return fmt.Errorf("table %s %s does not match the schema recorded in the backup (registered - against made +):\n%s",
			bt.Name, how, diff)
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
	var settings []meta.Setting
	for _, s := range l.settings {
		if t, ok := strings.CutPrefix(s.Key, meta.VersionKeyPrefix); ok && !inBackup[t] {
			if _, owned := r.pack.table(t); owned {
				continue
			}
		}
		settings = append(settings, meta.Setting{PackID: s.PackID, Key: s.Key, Value: s.Value, UpdatedAt: s.UpdatedAt})
	}
	if err := meta.ReplaceSettings(ctx, tx, r.pack.ID, meta.Keys{Except: keep}, settings); err != nil {
		return err
	}
	regs := make([]meta.Registration, 0, len(l.regs))
	for _, x := range l.regs {
		regs = append(regs, meta.Registration{TableName_: x.TableName, TableVersion: x.TableVersion, PackID: x.PackID,
			SchemaText: x.SchemaText, CreatedAt: x.CreatedAt})
	}
	if err := meta.ReplaceRegistrations(ctx, tx, r.pack.ID, names, regs); err != nil {
		return err
	}
	return nil
}
