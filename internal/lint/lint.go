// Package lint reads what one step does to a table from the table's
// schema texts before and after it (internal/schema), and names the
// changes that lose data, that fail on a table with rows, or that break
// code reading the old shape. Rules carry stable ids: Atlas's where Atlas
// has one (https://atlasgo.io/lint/analyzers), PH1xx for packhost's own.
//
// The lint sees schemas, not statements nor data: a column dropped and
// another added with the same definition in one step reads as a rename
// (BC102), as Atlas would read ALTER TABLE ... RENAME COLUMN.
package lint

import (
	"fmt"
	"sort"
	"strings"

	"github.com/packhost/packhost/internal/schema"
)

// Finding is one change a step makes that an operator or author should
// know about. Its JSON form is part of the status report's contract
// (pending_updates[].db_changes[].lint[]) and of pack.json.
type Finding struct {
	Rule    string `json:"rule"`
	Table   string `json:"table"`
	Column  string `json:"column"`
	Message string `json:"message"`
}

// Destructive reports whether the finding's rule loses data: such a
// finding on a step not marked Destructive fails `host pack build`.
func (f Finding) Destructive() bool { return Rules[f.Rule].Kind == Destructive }

func (f Finding) String() string { return f.Rule + " " + f.Message }

// Kinds of rules, after Atlas's analyzers.
const (
	// Destructive: the step loses data (Atlas "destructive").
	Destructive = "destructive"
	// DataDependent: the step may fail, or behave differently, on a
	// table with rows (Atlas "data_depend").
	DataDependent = "data_dependent"
	// Incompatible: code written for the old shape breaks (Atlas
	// "incompatible").
	Incompatible = "incompatible"
)

// Rule describes one rule id.
type Rule struct {
	Kind  string
	Title string
}

// Rules are every rule the lint reports, by id.
var Rules = map[string]Rule{
	"DS102": {Destructive, "table dropped"},
	"DS103": {Destructive, "column dropped"},
	"BC101": {Incompatible, "table renamed"},
	"BC102": {Incompatible, "column renamed"},
	"MF101": {DataDependent, "unique index added on existing columns"},
	"MF102": {DataDependent, "index made unique"},
	"MF103": {DataDependent, "NOT NULL column added without a default"},
	"MF104": {DataDependent, "column made NOT NULL"},
	"LT101": {DataDependent, "SQLite: column made NOT NULL without a default"},
	"PH101": {Destructive, "column type narrowed"},
	"PH102": {Incompatible, "column type changed"},
	"PH103": {DataDependent, "SQLite: column added with a non-constant default"},
	"PH104": {DataDependent, "primary key changed"},
}

// Step lints the step that took table from the schema text before to the
// text after, on dialect ("sqlite" or "postgres"). A step that creates the
// table (before is empty) has nothing to lint.
func Step(dialect, before, after string) ([]Finding, error) {
	old, err := schema.Parse(before)
	if err != nil {
		return nil, fmt.Errorf("lint: before: %w", err)
	}
	cur, err := schema.Parse(after)
	if err != nil {
		return nil, fmt.Errorf("lint: after: %w", err)
	}
	if old == nil {
		return nil, nil
	}
	l := &linter{dialect: dialect, table: old.Name}
	if cur == nil {
		l.add("DS102", "", "drops table %s and every row in it", old.Name)
		return l.out, nil
	}
	if cur.Name != old.Name {
		l.add("BC101", "", "renames table %s to %s: code that names %s breaks", old.Name, cur.Name, old.Name)
		l.table = cur.Name
	}
	l.columns(old, cur)
	l.primaryKey(old, cur)
	l.uniques(old, cur)
	return Merge(l.out), nil
}

type linter struct {
	dialect, table string
	out            []Finding
}

func (l *linter) add(rule, column, format string, a ...any) {
	l.out = append(l.out, Finding{Rule: rule, Table: l.table, Column: column, Message: fmt.Sprintf(format, a...)})
}

func (l *linter) columns(old, cur *schema.Table) {
	var dropped, added []schema.Column
	for _, c := range old.Columns {
		if _, ok := cur.Column(c.Name); !ok {
			dropped = append(dropped, c)
		}
	}
	for _, c := range cur.Columns {
		o, ok := old.Column(c.Name)
		if !ok {
			added = append(added, c)
			continue
		}
		l.changed(o, c)
	}
	renamed := renames(dropped, added)
	for _, d := range dropped {
		if to, ok := renamed[d.Name]; ok {
			l.add("BC102", d.Name, "renames column %s.%s to %s (or drops it and adds %s with the same definition, which loses its data): code that reads %s breaks",
				l.table, d.Name, to, to, d.Name)
			continue
		}
		l.add("DS103", d.Name, "drops column %s.%s and the data in it", l.table, d.Name)
	}
	to := map[string]bool{}
	for _, v := range renamed {
		to[v] = true
	}
	for _, a := range added {
		if to[a.Name] || a.Generated() {
			continue
		}
		if a.NotNull && !a.HasDefault {
			l.add("MF103", a.Name, "adds NOT NULL column %s.%s without a default: the step fails on a table with rows; give it a default, or add it nullable, fill it, then make it NOT NULL",
				l.table, a.Name)
		}
		if l.dialect == "sqlite" && a.HasDefault && !constantDefault(a.Default) {
			l.add("PH103", a.Name, "on SQLite, adds column %s.%s with the non-constant default %s: SQLite refuses that on a table with rows (\"Cannot add a column with non-constant default\"); add it with a constant default or none, then fill it",
				l.table, a.Name, a.Default)
		}
	}
}

// renames pairs dropped columns with added ones of the same definition,
// where the pairing is unambiguous.
func renames(dropped, added []schema.Column) map[string]string {
	def := func(c schema.Column) string {
		return fmt.Sprintf("%s|%v|%v|%s|%s", c.Type, c.NotNull, c.HasDefault, c.Default, c.Extra)
	}
	byDef := map[string][]string{}
	for _, a := range added {
		byDef[def(a)] = append(byDef[def(a)], a.Name)
	}
	dropsByDef := map[string]int{}
	for _, d := range dropped {
		dropsByDef[def(d)]++
	}
	out := map[string]string{}
	for _, d := range dropped {
		if names := byDef[def(d)]; len(names) == 1 && dropsByDef[def(d)] == 1 {
			out[d.Name] = names[0]
		}
	}
	return out
}

func (l *linter) changed(o, c schema.Column) {
	if o.Type != c.Type {
		from, to := schema.ParseType(o.Type), schema.ParseType(c.Type)
		if narrows(from, to) {
			l.add("PH101", c.Name, "narrows column %s.%s from %s to %s: values that do not fit are cut or refused", l.table, c.Name, typeName(o.Type), typeName(c.Type))
		} else {
			l.add("PH102", c.Name, "changes column %s.%s from %s to %s: the table is rewritten, and code that reads the old type may break",
				l.table, c.Name, typeName(o.Type), typeName(c.Type))
		}
	}
	if c.NotNull && !o.NotNull && !c.Generated() {
		if l.dialect == "sqlite" && !c.HasDefault {
			l.add("LT101", c.Name, "on SQLite, makes column %s.%s NOT NULL without a default: the table is rebuilt, and the step fails if a row holds NULL there",
				l.table, c.Name)
		} else {
			l.add("MF104", c.Name, "makes column %s.%s NOT NULL: the step fails if a row holds NULL there; fill the NULLs in the same step first",
				l.table, c.Name)
		}
	}
}

func typeName(s string) string {
	if s == "" {
		return "(no type)"
	}
	return s
}

// narrows reports whether values of type from may not fit type to.
func narrows(from, to schema.Type) bool {
	if from.Array != to.Array {
		return true
	}
	if from.Family == to.Family {
		switch from.Family {
		case schema.FamilyInt, schema.FamilyFloat:
			return to.Bits < from.Bits
		case schema.FamilyText:
			return to.Length != 0 && (from.Length == 0 || to.Length < from.Length)
		case schema.FamilyDecimal:
			return to.Precision != 0 && (from.Precision == 0 || to.Precision < from.Precision || to.Scale < from.Scale)
		}
		return false
	}
	switch {
	case to.Family == schema.FamilyText:
		// Anything reads as text; a bounded text may be too short.
		return to.Length != 0
	case from.Family == schema.FamilyInt && (to.Family == schema.FamilyDecimal || to.Family == schema.FamilyFloat):
		return to.Family == schema.FamilyDecimal && to.Precision != 0 && to.Precision-to.Scale < digits(from.Bits)
	case from.Family == schema.FamilyBool && to.Family == schema.FamilyInt:
		return false
	case from.Family == schema.FamilyDate && to.Family == schema.FamilyTimestamp:
		return false
	}
	return true
}

// digits is how many decimal digits an integer of bits needs.
func digits(bits int) int {
	switch {
	case bits <= 8:
		return 3
	case bits <= 16:
		return 5
	case bits <= 32:
		return 10
	}
	return 19
}

// constantDefault reports whether SQLite accepts dflt (as its pragmas
// report it) as the default of a column added to a table with rows: a
// literal, possibly signed, or NULL.
func constantDefault(dflt string) bool {
	d := strings.TrimSpace(dflt)
	u := strings.ToUpper(d)
	switch {
	case u == "NULL" || u == "TRUE" || u == "FALSE":
		return true
	case len(d) >= 2 && (d[0] == '\'' && d[len(d)-1] == '\'' || d[0] == '"' && d[len(d)-1] == '"'):
		// SQLite reads a double-quoted default as a string (GORM
		// writes them so).
		return true
	case (strings.HasPrefix(u, "X'") && strings.HasSuffix(u, "'")):
		return true
	}
	num := strings.TrimLeft(d, "+-")
	if num == "" {
		return false
	}
	dot, exp := false, false
	for i, r := range num {
		switch {
		case r >= '0' && r <= '9':
		case r == '.' && !dot && !exp:
			dot = true
		case (r == 'e' || r == 'E') && !exp && i > 0:
			exp = true
		case (r == '+' || r == '-') && i > 0 && (num[i-1] == 'e' || num[i-1] == 'E'):
		default:
			return false
		}
	}
	return true
}

func (l *linter) primaryKey(old, cur *schema.Table) {
	if strings.Join(old.PrimaryKey, ",") == strings.Join(cur.PrimaryKey, ",") || len(cur.PrimaryKey) == 0 {
		return
	}
	// Rows are distinct on the old key, so a key that keeps all of its
	// columns cannot collide.
	keeps := len(old.PrimaryKey) > 0
	for _, c := range old.PrimaryKey {
		if !contains(cur.PrimaryKey, c) {
			keeps = false
		}
	}
	if keeps {
		return
	}
	from := "none"
	if len(old.PrimaryKey) > 0 {
		from = "(" + strings.Join(old.PrimaryKey, ", ") + ")"
	}
	l.add("PH104", "", "changes the primary key of %s from %s to (%s): the step fails if existing rows collide on the new key",
		l.table, from, strings.Join(cur.PrimaryKey, ", "))
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// uniques finds unique indexes the step adds over columns that already
// held data.
func (l *linter) uniques(old, cur *schema.Table) {
	had := map[string]bool{}
	for _, u := range old.Uniques {
		had[u.Def] = true
	}
	for _, u := range cur.Uniques {
		if had[u.Def] {
			continue
		}
		existing := true
		for _, c := range u.Columns {
			name := strings.TrimSuffix(c, " desc")
			if _, ok := old.Column(name); !ok {
				existing = false
			}
		}
		if !existing {
			continue
		}
		cols := strings.Join(u.Columns, ", ")
		if nonUniqueBefore(old, cur, u) {
			l.add("MF102", firstColumn(u), "makes the index on %s (%s) unique: the step fails if existing rows hold duplicates", l.table, cols)
			continue
		}
		l.add("MF101", firstColumn(u), "adds a unique index on %s (%s), which already hold data: the step fails if existing rows hold duplicates", l.table, cols)
	}
}

// nonUniqueBefore reports whether old had a plain index on u's key that
// cur no longer has: the index was made unique.
func nonUniqueBefore(old, cur *schema.Table, u schema.Index) bool {
	key := strings.Join(u.Columns, ",")
	kept := map[string]bool{}
	for _, ix := range cur.Indexes {
		kept[ix.Name] = true
	}
	for _, ix := range old.Indexes {
		if strings.Join(ix.Columns, ",") == key && !kept[ix.Name] {
			return true
		}
	}
	return false
}

func firstColumn(u schema.Index) string {
	if len(u.Columns) == 1 {
		return strings.TrimSuffix(u.Columns[0], " desc")
	}
	return ""
}

// Merge joins the findings of one step on several dialects: a rule on a
// column is reported once, with the first dialect's message.
func Merge(lists ...[]Finding) []Finding {
	seen := map[string]bool{}
	var out []Finding
	for _, l := range lists {
		for _, f := range l {
			k := f.Rule + "\x00" + f.Table + "\x00" + f.Column
			if seen[k] {
				continue
			}
			seen[k] = true
			out = append(out, f)
		}
	}
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].Rule != out[j].Rule {
			return out[i].Rule < out[j].Rule
		}
		return out[i].Column < out[j].Column
	})
	return out
}
