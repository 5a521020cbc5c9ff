// Package schema reads the canonical schema text of a live table and compares
// two such texts. The host stores the text of each table when a version is
// installed (schema_registry) and compares it with the live table at start to
// detect drift.
//
// The text is one item per line, sections in this order, lines sorted within
// each section:
//
//	table users
//	column email varchar(255) not null default ''
//	column id integer not null
//	primary key (id)
//	unique (email)
//	index idx_users_created (created_at)
//
// It does not depend on the order in which columns were created (ALTER TABLE
// ADD COLUMN appends, a fresh CREATE TABLE may order differently) nor on
// names the database makes up (SQLite autoindex names, which depend on
// creation order; hence "unique" lines carry no name). Texts are per dialect:
// the same table reads differently on SQLite and PostgreSQL.
//
// Identifiers that are not plain lower-case words are written in double
// quotes. Types are lower case; defaults are written as the database reports
// them. Index columns carry " desc" when descending. PostgreSQL adds identity
// and generated columns, INCLUDE columns, a non-btree method ("using gin")
// and a partial index's predicate ("where ..."). SQLite reports neither index
// expressions nor predicates, so such an index line ends with the statement
// that made it ("as CREATE INDEX ..."). Foreign keys, check constraints,
// collations and SQLite AUTOINCREMENT are not part of the text.
package schema

import (
	"context"
	"fmt"
	"regexp"
	"sort"
	"strings"

	"gorm.io/gorm"
)

// Describe returns the canonical schema text of table; exists is false, with
// no error, when there is no such table (in the current schema on
// PostgreSQL, in the main database on SQLite).
func Describe(ctx context.Context, db *gorm.DB, table string) (text string, exists bool, err error) {
	db = db.WithContext(ctx)
	var t *tableInfo
	switch name := db.Dialector.Name(); name {
	case "sqlite":
		t, err = describeSQLite(db, table)
	case "postgres":
		t, err = describePostgres(db, table)
	default:
		return "", false, fmt.Errorf("describe table %s: unsupported database %q", table, name)
	}
	if err != nil {
		return "", false, fmt.Errorf("describe table %s: %w", table, err)
	}
	if t == nil {
		return "", false, nil
	}
	return t.text(), true, nil
}

// tableInfo is what the dialects read, before it is rendered.
type tableInfo struct {
	name       string
	columns    []string // "column ..." lines
	primaryKey []string // key column names in key order
	uniques    []string // "unique ..." lines
	indexes    []string // "index ..." lines
}

func (t *tableInfo) text() string {
	var b strings.Builder
	b.WriteString("table " + ident(t.name) + "\n")
	for _, section := range [][]string{t.columns, pkLine(t.primaryKey), t.uniques, t.indexes} {
		lines := append([]string(nil), section...)
		sort.Strings(lines)
		for _, l := range lines {
			b.WriteString(l + "\n")
		}
	}
	return b.String()
}

func pkLine(cols []string) []string {
	if len(cols) == 0 {
		return nil
	}
	return []string{"primary key (" + identList(cols) + ")"}
}

func columnLine(name, typ string, notNull bool, dflt string, hasDefault bool, extra string) string {
	l := "column " + ident(name) + " " + strings.ToLower(strings.TrimSpace(typ))
	if notNull {
		l += " not null"
	}
	if hasDefault {
		l += " default " + dflt
	}
	if extra != "" {
		l += " " + extra
	}
	return l
}

var plainIdent = regexp.MustCompile(`^[a-z_][a-z0-9_]*$`)

// ident writes a name as is when it is a plain lower-case word, and in
// double quotes otherwise, so that every line splits on spaces.
func ident(s string) string {
	if plainIdent.MatchString(s) {
		return s
	}
	return `"` + strings.ReplaceAll(s, `"`, `""`) + `"`
}

func identList(names []string) string {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = ident(n)
	}
	return strings.Join(q, ", ")
}

// Diff compares a registered schema text with a live one. diff has one line
// per line of either text: "- " for a line only in registered, "+ " for one
// only in live, "  " for a line in both; it is empty when the texts are
// equal. columns names the columns whose "column" lines differ, sorted and
// unique.
func Diff(registered, live string) (diff string, columns []string) {
	a, b := splitLines(registered), splitLines(live)
	if equal(a, b) {
		return "", nil
	}
	// Longest common subsequence; schema texts are a few dozen lines.
	lcs := make([][]int, len(a)+1)
	for i := range lcs {
		lcs[i] = make([]int, len(b)+1)
	}
	for i := len(a) - 1; i >= 0; i-- {
		for j := len(b) - 1; j >= 0; j-- {
			if a[i] == b[j] {
				lcs[i][j] = lcs[i+1][j+1] + 1
			} else {
				lcs[i][j] = max(lcs[i+1][j], lcs[i][j+1])
			}
		}
	}
	var out strings.Builder
	changed := map[string]bool{}
	mark := func(prefix, line string) {
		out.WriteString(prefix + line + "\n")
		if prefix != "  " {
			if c, ok := columnName(line); ok {
				changed[c] = true
			}
		}
	}
	i, j := 0, 0
	for i < len(a) || j < len(b) {
		switch {
		case i < len(a) && j < len(b) && a[i] == b[j]:
			mark("  ", a[i])
			i++
			j++
		case j == len(b) || (i < len(a) && lcs[i+1][j] >= lcs[i][j+1]):
			mark("- ", a[i])
			i++
		default:
			mark("+ ", b[j])
			j++
		}
	}
	for c := range changed {
		columns = append(columns, c)
	}
	sort.Strings(columns)
	return out.String(), columns
}

func splitLines(s string) []string {
	s = strings.TrimRight(s, "\n")
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// columnName returns the column a "column ..." line is about, unquoted.
func columnName(line string) (string, bool) {
	rest, ok := strings.CutPrefix(line, "column ")
	if !ok {
		return "", false
	}
	if !strings.HasPrefix(rest, `"`) {
		name, _, _ := strings.Cut(rest, " ")
		return name, true
	}
	// Quoted: "" stands for one double quote.
	var b strings.Builder
	for i := 1; i < len(rest); i++ {
		if rest[i] == '"' {
			if i+1 < len(rest) && rest[i+1] == '"' {
				b.WriteByte('"')
				i++
				continue
			}
			break
		}
		b.WriteByte(rest[i])
	}
	return b.String(), true
}
