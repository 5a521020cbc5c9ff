package schema

import (
	"context"
	"database/sql"
	"fmt"
	"strings"

	"gorm.io/gorm"
)

// Definition is the SQL that makes a table again as it is, in three parts
// so that a restore can load the rows between them: Create makes the table
// with its columns, sequences, primary key, unique and check constraints;
// Indexes makes its other indexes (and, on SQLite, its triggers);
// ForeignKeys adds its foreign keys, once every table they point to is
// back. A backup records it, so a table is restored from its own schema,
// whatever code is installed when it is restored.
type Definition struct {
	Create      []string `json:"create"`
	Indexes     []string `json:"indexes,omitempty"`
	ForeignKeys []string `json:"foreign_keys,omitempty"`
}

// Define reads table's Definition from the live database.
func Define(ctx context.Context, db *gorm.DB, table string) (*Definition, error) {
	db = db.WithContext(ctx)
	var (
		d   *Definition
		err error
	)
	switch name := db.Dialector.Name(); name {
	case "sqlite":
		d, err = defineSQLite(db, table)
	case "postgres":
		d, err = definePostgres(db, table)
	default:
		return nil, fmt.Errorf("define table %s: unsupported database %q", table, name)
	}
	if err != nil {
		return nil, fmt.Errorf("define table %s: %w", table, err)
	}
	return d, nil
}

// defineSQLite takes the statements SQLite keeps in sqlite_master, which
// made the table, its indexes and its triggers; foreign keys are part of
// the CREATE TABLE.
func defineSQLite(db *gorm.DB, table string) (*Definition, error) {
	d := &Definition{}
	err := query(db, `SELECT type, sql FROM sqlite_master WHERE tbl_name = ? AND sql IS NOT NULL
		ORDER BY CASE type WHEN 'table' THEN 0 WHEN 'index' THEN 1 ELSE 2 END, name`, []any{table}, func(rows *sql.Rows) error {
		var typ, stmt string
		if err := rows.Scan(&typ, &stmt); err != nil {
			return err
		}
		if typ == "table" {
			d.Create = append(d.Create, stmt)
		} else {
			d.Indexes = append(d.Indexes, stmt)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if len(d.Create) == 0 {
		return nil, fmt.Errorf("no such table")
	}
	return d, nil
}

// definePostgres writes the statements from the catalogs: the sequences
// behind serial columns, CREATE TABLE with each column's type, default,
// generation and nullability, the primary key, unique, exclusion and
// check constraints, the other indexes, and the foreign keys.
func definePostgres(db *gorm.DB, table string) (*Definition, error) {
	qt := quoteIdent(table)
	d := &Definition{}
	type column struct {
		name, typ, dflt, identity, generated, collation string
		notNull, hasDefault                             bool
	}
	var cols []column
	err := query(db, `SELECT a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod), a.attnotnull,
			d.adbin IS NOT NULL, coalesce(pg_catalog.pg_get_expr(d.adbin, d.adrelid), ''),
			a.attidentity::text, a.attgenerated::text,
			CASE WHEN a.attcollation <> t.typcollation AND a.attcollation <> 0 THEN coalesce((SELECT quote_ident(c.collname) FROM pg_catalog.pg_collation c WHERE c.oid = a.attcollation), '') ELSE '' END
		FROM pg_catalog.pg_attribute a
		JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
		LEFT JOIN pg_catalog.pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
		WHERE a.attrelid = `+pgTable+` AND a.attnum > 0 AND NOT a.attisdropped
		ORDER BY a.attnum`, []any{table}, func(rows *sql.Rows) error {
		var c column
		if err := rows.Scan(&c.name, &c.typ, &c.notNull, &c.hasDefault, &c.dflt, &c.identity, &c.generated, &c.collation); err != nil {
			return err
		}
		cols = append(cols, c)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read columns: %w", err)
	}
	if len(cols) == 0 {
		return nil, fmt.Errorf("no such table")
	}
	var owned []string
	var lines []string
	for _, c := range cols {
		l := quoteIdent(c.name) + " " + c.typ
		if c.collation != "" {
			l += " COLLATE " + c.collation
		}
		switch {
		case c.generated == "s":
			l += " GENERATED ALWAYS AS (" + c.dflt + ") STORED"
		case c.identity == "a" || c.identity == "d":
			kind := "ALWAYS"
			if c.identity == "d" {
				kind = "BY DEFAULT"
			}
			opts, err := sequenceOptions(db, table, c.name)
			if err != nil {
				return nil, err
			}
			// An identity's sequence takes the column's type.
			_, opts, _ = strings.Cut(opts, " INCREMENT")
			l += " GENERATED " + kind + " AS IDENTITY (INCREMENT" + opts + ")"
		case c.hasDefault:
			// A serial column: its sequence is made first and owned by
			// the column after.
			var seq sql.NullString
			if err := db.Raw(`SELECT pg_catalog.pg_get_serial_sequence(?, ?)`, qt, c.name).Scan(&seq).Error; err != nil {
				return nil, fmt.Errorf("find sequence of %s: %w", c.name, err)
			}
			if seq.Valid {
				opts, err := sequenceOptions(db, table, c.name)
				if err != nil {
					return nil, err
				}
				d.Create = append(d.Create, "CREATE SEQUENCE "+seq.String+" "+opts)
				owned = append(owned, "ALTER SEQUENCE "+seq.String+" OWNED BY "+qt+"."+quoteIdent(c.name))
			}
			l += " DEFAULT " + c.dflt
		}
		if c.notNull {
			l += " NOT NULL"
		}
		lines = append(lines, l)
	}
	d.Create = append(d.Create, "CREATE TABLE "+qt+" (\n\t"+strings.Join(lines, ",\n\t")+"\n)")
	d.Create = append(d.Create, owned...)
	err = query(db, `SELECT c.conname, c.contype::text, pg_catalog.pg_get_constraintdef(c.oid)
		FROM pg_catalog.pg_constraint c WHERE c.conrelid = `+pgTable+` AND c.contype IN ('p', 'u', 'x', 'c', 'f')
		ORDER BY CASE c.contype WHEN 'p' THEN 0 WHEN 'u' THEN 1 WHEN 'x' THEN 2 WHEN 'c' THEN 3 ELSE 4 END, c.conname`, []any{table}, func(rows *sql.Rows) error {
		var name, typ, def string
		if err := rows.Scan(&name, &typ, &def); err != nil {
			return err
		}
		stmt := "ALTER TABLE " + qt + " ADD CONSTRAINT " + quoteIdent(name) + " " + def
		if typ == "f" {
			d.ForeignKeys = append(d.ForeignKeys, stmt)
		} else {
			d.Create = append(d.Create, stmt)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read constraints: %w", err)
	}
	err = query(db, `SELECT pg_catalog.pg_get_indexdef(i.indexrelid) FROM pg_catalog.pg_index i
		JOIN pg_catalog.pg_class ic ON ic.oid = i.indexrelid
		WHERE i.indrelid = `+pgTable+` AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_constraint k WHERE k.conindid = i.indexrelid AND k.conrelid = i.indrelid)
		ORDER BY ic.relname`, []any{table}, func(rows *sql.Rows) error {
		var def string
		if err := rows.Scan(&def); err != nil {
			return err
		}
		d.Indexes = append(d.Indexes, def)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read indexes: %w", err)
	}
	return d, nil
}

// sequenceOptions are the options of the sequence behind a column, as
// CREATE SEQUENCE and GENERATED AS IDENTITY take them.
func sequenceOptions(db *gorm.DB, table, column string) (string, error) {
	var o struct {
		Typ       string
		Start     int64
		Increment int64
		Min       int64
		Max       int64
		Cache     int64
		Cycle     bool
	}
	err := db.Raw(`SELECT pg_catalog.format_type(s.seqtypid, NULL) AS typ, s.seqstart AS start, s.seqincrement AS increment,
			s.seqmin AS min, s.seqmax AS max, s.seqcache AS cache, s.seqcycle AS cycle
		FROM pg_catalog.pg_sequence s
		WHERE s.seqrelid = pg_catalog.pg_get_serial_sequence(?, ?)::regclass`, quoteIdent(table), column).Scan(&o).Error
	if err != nil {
		return "", fmt.Errorf("read the sequence of %s: %w", column, err)
	}
	cycle := "NO CYCLE"
	if o.Cycle {
		cycle = "CYCLE"
	}
	return fmt.Sprintf("AS %s INCREMENT BY %d MINVALUE %d MAXVALUE %d START WITH %d CACHE %d %s",
		o.Typ, o.Increment, o.Min, o.Max, o.Start, o.Cache, cycle), nil
}

func quoteIdent(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }
