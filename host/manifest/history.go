package manifest

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"sort"

	"github.com/packhost/packhost/internal/dbconn"
	"github.com/packhost/packhost/internal/naming"
	"github.com/packhost/packhost/internal/schema"
)

// History is a release's schema history: the canonical schema text
// (internal/schema) of every version of every table, per dialect, as the
// pack's steps make it on an empty database. A released history never
// changes: `host pack build --previous` and the installer compare it with
// what earlier releases and the database recorded.
type History struct {
	// Format is the version of the text's rules (internal/schema.Format)
	// the texts were written under.
	Format int `json:"format"`
	// Dialects are those the history was computed on: sqlite always,
	// postgres when `host pack build` was given a PostgreSQL server.
	Dialects []string `json:"dialects"`
	// Schemas has one entry per table, version and dialect.
	Schemas []TableSchema `json:"schemas"`
}

// TableSchema is one table's schema at one version on one dialect.
type TableSchema struct {
	Table   string `json:"table"`
	Version int    `json:"version"`
	Dialect string `json:"dialect"`
	// SHA256 is the sum of Text, so a history can be compared without
	// reading the texts.
	SHA256 string `json:"sha256"`
	Text   string `json:"text"`
}

// SchemaSHA256 is the sum a TableSchema records for text.
func SchemaSHA256(text string) string {
	sum := sha256.Sum256([]byte(text))
	return hex.EncodeToString(sum[:])
}

// Has reports whether the history was computed on dialect.
func (h *History) Has(dialect string) bool {
	if h == nil {
		return false
	}
	for _, d := range h.Dialects {
		if d == dialect {
			return true
		}
	}
	return false
}

// Schema returns the table's schema at version on dialect.
func (h *History) Schema(table, dialect string, version int) (TableSchema, bool) {
	if h == nil {
		return TableSchema{}, false
	}
	for _, s := range h.Schemas {
		if s.Table == table && s.Dialect == dialect && s.Version == version {
			return s, true
		}
	}
	return TableSchema{}, false
}

// Tables returns each table with its latest version.
func (h *History) Tables() map[string]int {
	out := map[string]int{}
	if h == nil {
		return out
	}
	for _, s := range h.Schemas {
		out[s.Table] = max(out[s.Table], s.Version)
	}
	return out
}

// TableNames returns the tables, sorted.
func (h *History) TableNames() []string {
	var out []string
	for t := range h.Tables() {
		out = append(out, t)
	}
	sort.Strings(out)
	return out
}

func (h *History) validate() error {
	if h.Format < 1 {
		return fmt.Errorf("format %d: want 1 or more", h.Format)
	}
	if len(h.Dialects) == 0 {
		return fmt.Errorf("no dialects")
	}
	known := map[string]bool{}
	for _, d := range h.Dialects {
		if d != dbconn.SQLite && d != dbconn.Postgres {
			return fmt.Errorf("dialect %q: want sqlite or postgres", d)
		}
		if known[d] {
			return fmt.Errorf("dialect %s listed twice", d)
		}
		known[d] = true
	}
	seen := map[string]bool{}
	count := map[string]map[string]int{} // dialect -> table -> versions
	for _, s := range h.Schemas {
		switch {
		case !naming.TableName.MatchString(s.Table):
			return fmt.Errorf("table name %q: must match %s", s.Table, naming.TableName)
		case s.Version < 1:
			return fmt.Errorf("table %s: version %d", s.Table, s.Version)
		case !known[s.Dialect]:
			return fmt.Errorf("table %s version %d: dialect %q is not among %v", s.Table, s.Version, s.Dialect, h.Dialects)
		case !SHA256Pattern.MatchString(s.SHA256):
			return fmt.Errorf("table %s version %d (%s): sha256 %q is not 64 lower-case hex digits", s.Table, s.Version, s.Dialect, s.SHA256)
		case SchemaSHA256(s.Text) != s.SHA256:
			return fmt.Errorf("table %s version %d (%s): the text does not match its sha256", s.Table, s.Version, s.Dialect)
		}
		key := fmt.Sprintf("%s %d %s", s.Table, s.Version, s.Dialect)
		if seen[key] {
			return fmt.Errorf("table %s version %d (%s) is listed twice", s.Table, s.Version, s.Dialect)
		}
		seen[key] = true
		if count[s.Dialect] == nil {
			count[s.Dialect] = map[string]int{}
		}
		count[s.Dialect][s.Table]++
	}
	tables := h.Tables()
	for _, d := range h.Dialects {
		if len(count[d]) != len(tables) {
			return fmt.Errorf("dialect %s does not list every table", d)
		}
		for t, n := range tables {
			if count[d][t] != n {
				return fmt.Errorf("table %s (%s): %d versions listed, want every version from 1 to %d", t, d, count[d][t], n)
			}
		}
	}
	return nil
}

// HistoryChange is a released version of a table whose schema differs
// between two histories (or is gone from the newer one).
type HistoryChange struct {
	Table   string
	Version int
	Dialect string
	// Was and Now are the texts; Now is empty when the newer history no
	// longer has the version.
	Was, Now string
}

// Diff is Was (-) against Now (+), one line per line (internal/schema.Diff).
func (c HistoryChange) Diff() string {
	d, _ := schema.Diff(c.Was, c.Now)
	return d
}

// Changes lists every version prev records on a dialect both histories
// were computed on, whose schema h makes differently or no longer has, in
// table, version and dialect order. Histories written under other text
// rules (Format) are not compared: ok is false.
func (h *History) Changes(prev *History) (changes []HistoryChange, ok bool) {
	if h == nil || prev == nil || h.Format != prev.Format {
		return nil, false
	}
	for _, p := range prev.Schemas {
		if !h.Has(p.Dialect) {
			continue
		}
		cur, found := h.Schema(p.Table, p.Dialect, p.Version)
		if found && cur.SHA256 == p.SHA256 {
			continue
		}
		c := HistoryChange{Table: p.Table, Version: p.Version, Dialect: p.Dialect, Was: p.Text}
		if found {
			c.Now = cur.Text
		}
		changes = append(changes, c)
	}
	sort.SliceStable(changes, func(i, j int) bool {
		a, b := changes[i], changes[j]
		if a.Table != b.Table {
			return a.Table < b.Table
		}
		if a.Version != b.Version {
			return a.Version < b.Version
		}
		return a.Dialect < b.Dialect
	})
	return changes, true
}
