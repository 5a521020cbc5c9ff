package manifest

import (
	"errors"
	"strings"
	"testing"
)

func schemaAt(table string, v int, dialect, text string) TableSchema {
	return TableSchema{Table: table, Version: v, Dialect: dialect, SHA256: SchemaSHA256(text), Text: text}
}

func withHistory(h *History) *Manifest {
	return &Manifest{ID: "notes", Version: "1.2.0", History: h,
		DBChanges: []DBChange{{Table: "notes", From: 0, To: 1, Summary: "creates notes"}, {Table: "notes", From: 1, To: 2, Summary: "adds author"}},
		Binaries:  map[string]Binary{"linux/amd64": {Path: "bin/notes", SHA256: strings.Repeat("a", 64)}}}
}

func goodHistory() *History {
	return &History{Format: 1, Dialects: []string{"sqlite", "postgres"}, Schemas: []TableSchema{
		schemaAt("notes", 1, "sqlite", "table notes\n"), schemaAt("notes", 2, "sqlite", "table notes\ncolumn author text\n"),
		schemaAt("notes", 1, "postgres", "table notes\n"), schemaAt("notes", 2, "postgres", "table notes\ncolumn author text\n"),
	}}
}

func TestAManifestsHistoryIsValidated(t *testing.T) {
	if err := withHistory(goodHistory()).Validate(); err != nil {
		t.Fatalf("a good history: %v", err)
	}
	for _, tc := range []struct {
		name   string
		change func(h *History)
		want   string
	}{
		{"a text that does not match its sum", func(h *History) { h.Schemas[1].Text += "column x text\n" }, "the text does not match its sha256"},
		{"an unknown dialect", func(h *History) { h.Dialects = append(h.Dialects, "mysql") }, `dialect "mysql"`},
		{"a version listed twice", func(h *History) { h.Schemas = append(h.Schemas, h.Schemas[0]) }, "is listed twice"},
		{"a missing version", func(h *History) { h.Schemas = h.Schemas[1:] }, "want every version from 1 to 2"},
		{"a dialect that lacks a table", func(h *History) {
			h.Schemas = append(h.Schemas, schemaAt("tags", 1, "sqlite", "table tags\n"))
		}, "dialect postgres does not list every table"},
		{"no format", func(h *History) { h.Format = 0 }, "format 0"},
		{"a bad table name", func(h *History) { h.Schemas[0].Table = "Notes; drop" }, "table name"},
		{"versions db_changes do not reach", func(h *History) {
			h.Schemas = append(h.Schemas, schemaAt("notes", 3, "sqlite", "x"), schemaAt("notes", 3, "postgres", "x"))
		}, "table notes has 3 versions, db_changes take it to 2"},
	} {
		t.Run(tc.name+" is refused", func(t *testing.T) {
			h := goodHistory()
			tc.change(h)
			err := withHistory(h).Validate()
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Validate: %v, want ErrInvalid saying %q", err, tc.want)
			}
		})
	}
}

func TestAnOlderHostRefusesAManifestWithAHistory(t *testing.T) {
	data, err := withHistory(goodHistory()).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Parse(data); err != nil {
		t.Fatalf("this host: %v", err)
	}
	// What a host without the field does: refuse an unknown field.
	older := strings.Replace(string(data), `"history"`, `"histories"`, 1)
	if _, err := Parse([]byte(older)); err == nil || !strings.Contains(err.Error(), `unknown field "histories"`) {
		t.Fatalf("an unknown field: %v", err)
	}
}

func TestChangesNamesEveryReleasedVersionThatDiffers(t *testing.T) {
	prev := goodHistory()
	cur := goodHistory()
	cur.Schemas[1] = schemaAt("notes", 2, "sqlite", "table notes\ncolumn word_count integer\n")
	cur.Dialects = []string{"sqlite"} // a build without PostgreSQL compares SQLite only
	cur.Schemas = cur.Schemas[:2]
	changes, ok := cur.Changes(prev)
	if !ok || len(changes) != 1 || changes[0].Table != "notes" || changes[0].Version != 2 || changes[0].Dialect != "sqlite" {
		t.Fatalf("changes %+v, %v", changes, ok)
	}
	if d := changes[0].Diff(); !strings.Contains(d, "- column author text") || !strings.Contains(d, "+ column word_count integer") {
		t.Errorf("diff:\n%s", d)
	}
	prev.Format = 2
	if _, ok := cur.Changes(prev); ok {
		t.Error("histories of different formats were compared")
	}
}

func TestTablesComeFromTheHistoryOrElseFromDBChanges(t *testing.T) {
	m := withHistory(nil)
	if got := m.Tables(); len(got) != 1 || got["notes"] != 2 {
		t.Fatalf("tables from db_changes: %v", got)
	}
	m.History = goodHistory()
	if got := m.Tables(); len(got) != 1 || got["notes"] != 2 {
		t.Fatalf("tables from the history: %v", got)
	}
}
