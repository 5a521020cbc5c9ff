package schema

import (
	"database/sql"
	"fmt"
	"strings"

	"gorm.io/gorm"
)

// describeSQLite reads table from the main database through the pragma
// table-valued functions, which take the table name as a bound parameter.
// It returns nil when there is no such table.
func describeSQLite(db *gorm.DB, table string) (*tableInfo, error) {
	// SQLite compares table names without regard to ASCII case; the text
	// carries the name as it was created.
	var names []string
	err := query(db, `SELECT name FROM sqlite_master WHERE type = 'table' AND name = ? COLLATE NOCASE`, []any{table}, func(rows *sql.Rows) error {
		var n string
		if err := rows.Scan(&n); err != nil {
			return err
		}
		names = append(names, n)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("look up table: %w", err)
	}
	if len(names) == 0 {
		return nil, nil
	}
	t := &tableInfo{name: names[0]}

	// table_info never lists the implicit rowid. pk is the column's
	// position in the primary key, 0 when it is not part of it.
	pk := map[int64]string{}
	err = query(db, `SELECT name, type, "notnull", dflt_value, pk FROM pragma_table_info(?, 'main')`, []any{t.name}, func(rows *sql.Rows) error {
		var (
			name, typ   string
			notNull, at int64
			dflt        sql.NullString
		)
		if err := rows.Scan(&name, &typ, &notNull, &dflt, &at); err != nil {
			return err
		}
		t.columns = append(t.columns, columnLine(name, typ, notNull != 0, dflt.String, dflt.Valid, ""))
		if at > 0 {
			pk[at] = name
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read columns: %w", err)
	}
	for i := int64(1); i <= int64(len(pk)); i++ {
		t.primaryKey = append(t.primaryKey, pk[i])
	}

	// Read the whole index list before asking about each index: with a
	// single-connection pool a second query inside the loop would wait
	// forever for the first to release the connection.
	type index struct {
		name    string
		unique  bool
		origin  string // c: CREATE INDEX, u: UNIQUE constraint, pk: PRIMARY KEY
		partial bool
	}
	var idx []index
	err = query(db, `SELECT name, "unique", origin, partial FROM pragma_index_list(?, 'main')`, []any{t.name}, func(rows *sql.Rows) error {
		var (
			ix              index
			unique, partial int64
		)
		if err := rows.Scan(&ix.name, &unique, &ix.origin, &partial); err != nil {
			return err
		}
		ix.unique, ix.partial = unique != 0, partial != 0
		idx = append(idx, ix)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read indexes: %w", err)
	}
	for _, ix := range idx {
		if ix.origin == "pk" {
			continue // the primary key line says it
		}
		var (
			cols []string
			expr bool
		)
		err := query(db, `SELECT cid, name, "desc" FROM pragma_index_xinfo(?, 'main') WHERE key = 1 ORDER BY seqno`, []any{ix.name}, func(rows *sql.Rows) error {
			var (
				cid, desc int64
				name      sql.NullString
			)
			if err := rows.Scan(&cid, &name, &desc); err != nil {
				return err
			}
			c := "(expression)" // SQLite does not report the expression
			if name.Valid && cid >= 0 {
				c = ident(name.String)
			} else {
				expr = true
			}
			if desc != 0 {
				c += " desc"
			}
			cols = append(cols, c)
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("read index %s: %w", ix.name, err)
		}
		line := "(" + strings.Join(cols, ", ") + ")"
		if expr || ix.partial {
			// The pragmas report neither expressions nor WHERE clauses:
			// add the statement that made the index, as it was written.
			var stmt []string
			err := query(db, `SELECT sql FROM sqlite_master WHERE type = 'index' AND name = ?`, []any{ix.name}, func(rows *sql.Rows) error {
				var s sql.NullString
				if err := rows.Scan(&s); err != nil {
					return err
				}
				stmt = append(stmt, strings.Join(strings.Fields(s.String), " "))
				return nil
			})
			if err != nil {
				return nil, fmt.Errorf("read index %s: %w", ix.name, err)
			}
			line += " as " + strings.Join(stmt, " ")
		}
		if ix.unique {
			t.uniques = append(t.uniques, "unique "+line)
		} else {
			t.indexes = append(t.indexes, "index "+ident(ix.name)+" "+line)
		}
	}
	return t, nil
}

// query runs q and calls each for every row, then closes the rows.
func query(db *gorm.DB, q string, args []any, each func(*sql.Rows) error) error {
	rows, err := db.Raw(q, args...).Rows()
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		if err := each(rows); err != nil {
			return err
		}
	}
	return rows.Err()
}
