package sdktest

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"gorm.io/gorm"

	"github.com/packhost/packhost/internal/schema"
)

// writeRows writes n more rows into table, with a value for every column
// the database does not fill itself, made from the column's type: numbers,
// text (within its length), booleans, times, bytes, JSON, UUIDs. Rows are
// numbered after those already there (after the largest key, for an
// integer key), so rows a step seeded are kept. Every third row leaves its
// nullable columns NULL (outside the primary key), so that a step that
// makes a column NOT NULL meets NULLs.
func writeRows(ctx context.Context, db *gorm.DB, table string, n int) error {
	if n <= 0 {
		return nil
	}
	text, exists, err := schema.Describe(ctx, db, table)
	if err != nil || !exists {
		return fmt.Errorf("read table %s: %v", table, err)
	}
	tb, err := schema.Parse(text)
	if err != nil {
		return err
	}
	inKey := map[string]bool{}
	for _, c := range tb.PrimaryKey {
		inKey[c] = true
	}
	var cols []schema.Column
	for _, c := range tb.Columns {
		t := schema.ParseType(c.Type)
		unknown := t.Family == schema.FamilyOther || t.Array
		if c.Generated() || (unknown && c.HasDefault) {
			continue // the database fills it
		}
		cols = append(cols, c)
	}
	names := make([]string, len(cols))
	marks := make([]string, len(cols))
	for i, c := range cols {
		names[i] = quote(c.Name)
		marks[i] = "?"
	}
	stmt := fmt.Sprintf("INSERT INTO %s (%s) VALUES (%s)", quote(tb.Name), strings.Join(names, ", "), strings.Join(marks, ", "))
	base, err := lastRow(ctx, db, tb)
	if err != nil {
		return err
	}
	for i := base + 1; i <= base+n; i++ {
		args := make([]any, len(cols))
		for j, c := range cols {
			nullable := !c.NotNull && !inKey[c.Name]
			v, ok := value(c, i, nullable && i%3 == 0)
			if !ok {
				return fmt.Errorf("column %s is of type %q, for which the kit makes no values", c.Name, c.Type)
			}
			args[j] = v
		}
		if err := db.WithContext(ctx).Exec(stmt, args...).Error; err != nil {
			return err
		}
	}
	return nil
}

// lastRow is the number the table's rows so far end at: the largest value
// of an integer primary key, or the row count.
func lastRow(ctx context.Context, db *gorm.DB, tb *schema.Table) (int, error) {
	q := "SELECT count(*) FROM " + quote(tb.Name)
	if len(tb.PrimaryKey) == 1 {
		if c, ok := tb.Column(tb.PrimaryKey[0]); ok && schema.ParseType(c.Type).Family == schema.FamilyInt {
			q = fmt.Sprintf("SELECT COALESCE(MAX(%s), 0) FROM %s", quote(c.Name), quote(tb.Name))
		}
	}
	var n int64
	if err := db.WithContext(ctx).Raw(q).Scan(&n).Error; err != nil {
		return 0, err
	}
	return int(n), nil
}

// value is row i's value for column c; null asks for NULL.
func value(c schema.Column, i int, null bool) (any, bool) {
	if null {
		return nil, true
	}
	t := schema.ParseType(c.Type)
	if t.Array {
		if c.NotNull {
			return nil, false
		}
		return nil, true
	}
	switch t.Family {
	case schema.FamilyInt:
		if t.Bits == 8 {
			return i % 128, true
		}
		return i, true
	case schema.FamilyFloat:
		return float64(i) + 0.5, true
	case schema.FamilyDecimal:
		if t.Precision > 0 {
			limit := 1
			for k := 0; k < t.Precision-t.Scale && k < 9; k++ {
				limit *= 10
			}
			return strconv.Itoa(i % limit), true
		}
		return strconv.Itoa(i), true
	case schema.FamilyText:
		// The fast-changing digits first: a short column cut to its
		// length still holds distinct values.
		s := reverse(strconv.FormatInt(int64(i), 36)) + " " + c.Name
		if t.Length > 0 && len(s) > t.Length {
			s = s[:t.Length]
		}
		return s, true
	case schema.FamilyBool:
		return i%2 == 0, true
	case schema.FamilyTimestamp, schema.FamilyDate:
		return time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(i) * 25 * time.Hour), true
	case schema.FamilyTime:
		return fmt.Sprintf("%02d:%02d:00", i%24, i%60), true
	case schema.FamilyBytes:
		return []byte{byte(i), byte(i >> 8), 0}, true
	case schema.FamilyJSON:
		return fmt.Sprintf(`{"row": %d}`, i), true
	case schema.FamilyUUID:
		return fmt.Sprintf("00000000-0000-4000-8000-%012d", i), true
	}
	// A type the kit does not know (an enum, a domain): NULL when it may.
	return nil, !c.NotNull
}

func quote(name string) string { return `"` + strings.ReplaceAll(name, `"`, `""`) + `"` }

func reverse(s string) string {
	b := []byte(s)
	for i, j := 0, len(b)-1; i < j; i, j = i+1, j-1 {
		b[i], b[j] = b[j], b[i]
	}
	return string(b)
}
