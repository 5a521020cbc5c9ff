package lint

import (
	"strings"
	"testing"
)

const notesV1 = `table notes
column body text not null
column id integer not null
primary key (id)
`

func TestEachRuleIsFoundFromTheSchemasBeforeAndAfterAStep(t *testing.T) {
	for _, tc := range []struct {
		name, dialect, before, after string
		// want is "RULE column" per finding, in order.
		want []string
		// words must appear in the first finding's message.
		words []string
	}{
		{name: "a step that creates the table has nothing to lint", dialect: "sqlite",
			before: "", after: notesV1},
		{name: "a column added with a constant default is fine", dialect: "sqlite",
			before: notesV1, after: strings.Replace(notesV1, "column id", "column author varchar(100) not null default ''\ncolumn id", 1)},
		{name: "a dropped column is DS103", dialect: "postgres",
			before: strings.Replace(notesV1, "column id", "column author text\ncolumn id", 1), after: notesV1,
			want: []string{"DS103 author"}, words: []string{"drops column notes.author"}},
		{name: "a dropped table is DS102", dialect: "postgres",
			before: notesV1, after: "",
			want: []string{"DS102 "}, words: []string{"drops table notes"}},
		{name: "a renamed table is BC101", dialect: "postgres",
			before: notesV1, after: strings.Replace(notesV1, "table notes", "table memos", 1),
			want: []string{"BC101 "}, words: []string{"renames table notes to memos"}},
		{name: "a column dropped and one added with its definition is BC102", dialect: "sqlite",
			before: notesV1, after: strings.Replace(notesV1, "column body", "column text", 1),
			want: []string{"BC102 body"}, words: []string{"renames column notes.body to text"}},
		{name: "two columns dropped with one definition are not taken for renames", dialect: "sqlite",
			before: "table t\ncolumn a text\ncolumn b text\ncolumn id integer\n", after: "table t\ncolumn c text\ncolumn id integer\n",
			want: []string{"DS103 a", "DS103 b"}},
		{name: "a NOT NULL column without a default is MF103", dialect: "postgres",
			before: notesV1, after: strings.Replace(notesV1, "column id", "column priority integer not null\ncolumn id", 1),
			want: []string{"MF103 priority"}, words: []string{"adds NOT NULL column notes.priority without a default", "fails on a table with rows"}},
		{name: "an identity column needs no default", dialect: "postgres",
			before: "table t\ncolumn a text\n", after: "table t\ncolumn a text\ncolumn id bigint not null generated always as identity\n"},
		{name: "a nullable column made NOT NULL is MF104 on PostgreSQL", dialect: "postgres",
			before: strings.Replace(notesV1, "column body text not null", "column body text", 1), after: notesV1,
			want: []string{"MF104 body"}, words: []string{"makes column notes.body NOT NULL"}},
		{name: "a nullable column made NOT NULL without a default is LT101 on SQLite", dialect: "sqlite",
			before: strings.Replace(notesV1, "column body text not null", "column body text", 1), after: notesV1,
			want: []string{"LT101 body"}, words: []string{"on SQLite", "NOT NULL without a default"}},
		{name: "a unique index on a column that held data is MF101", dialect: "sqlite",
			before: notesV1, after: notesV1 + "unique (body)\n",
			want: []string{"MF101 body"}, words: []string{"adds a unique index on notes (body)"}},
		{name: "a unique index on a column added by the same step is fine", dialect: "sqlite",
			before: notesV1, after: strings.Replace(notesV1, "column id", "column email text\ncolumn id", 1) + "unique (email)\n"},
		{name: "an index made unique is MF102", dialect: "postgres",
			before: notesV1 + "index idx_body (body)\n", after: notesV1 + "unique (body)\n",
			want: []string{"MF102 body"}, words: []string{"makes the index on notes (body) unique"}},
		{name: "a shorter varchar is PH101", dialect: "postgres",
			before: "table t\ncolumn name character varying(200)\n", after: "table t\ncolumn name character varying(50)\n",
			want: []string{"PH101 name"}, words: []string{"narrows column t.name from character varying(200) to character varying(50)"}},
		{name: "text made a bounded varchar is PH101", dialect: "sqlite",
			before: "table t\ncolumn name text\n", after: "table t\ncolumn name varchar(20)\n",
			want: []string{"PH101 name"}},
		{name: "bigint made integer is PH101", dialect: "postgres",
			before: "table t\ncolumn n bigint\n", after: "table t\ncolumn n integer\n",
			want: []string{"PH101 n"}},
		{name: "text made integer is PH101", dialect: "postgres",
			before: "table t\ncolumn n text\n", after: "table t\ncolumn n integer\n",
			want: []string{"PH101 n"}},
		{name: "a longer varchar is a type change, not a narrowing", dialect: "postgres",
			before: "table t\ncolumn name character varying(50)\n", after: "table t\ncolumn name character varying(200)\n",
			want: []string{"PH102 name"}},
		{name: "integer made text is a type change, not a narrowing", dialect: "postgres",
			before: "table t\ncolumn n integer\n", after: "table t\ncolumn n text\n",
			want: []string{"PH102 n"}},
		{name: "a column added with CURRENT_TIMESTAMP is PH103 on SQLite", dialect: "sqlite",
			before: notesV1, after: strings.Replace(notesV1, "column id", "column created_at datetime default CURRENT_TIMESTAMP\ncolumn id", 1),
			want: []string{"PH103 created_at"}, words: []string{"on SQLite", "non-constant default CURRENT_TIMESTAMP", "Cannot add a column with non-constant default"}},
		{name: "a column added with a double-quoted default, as GORM writes them, is fine on SQLite", dialect: "sqlite",
			before: notesV1, after: strings.Replace(notesV1, "column id", "column role varchar(32) not null default \"member\"\ncolumn id", 1)},
		{name: "a column added with a function call default is PH103 on SQLite", dialect: "sqlite",
			before: notesV1, after: strings.Replace(notesV1, "column id", "column at text default datetime('now')\ncolumn id", 1),
			want: []string{"PH103 at"}},
		{name: "a column added with now() is fine on PostgreSQL", dialect: "postgres",
			before: notesV1, after: strings.Replace(notesV1, "column id", "column created_at timestamp with time zone default now()\ncolumn id", 1)},
		{name: "a column added with a negative number default is fine on SQLite", dialect: "sqlite",
			before: notesV1, after: strings.Replace(notesV1, "column id", "column rank integer not null default -1.5e3\ncolumn id", 1)},
		{name: "a primary key moved to another column is PH104", dialect: "postgres",
			before: notesV1, after: strings.Replace(notesV1, "primary key (id)", "primary key (body)", 1),
			want: []string{"PH104 "}, words: []string{"changes the primary key of notes from (id) to (body)"}},
		{name: "a primary key that keeps its columns cannot collide", dialect: "postgres",
			before: notesV1, after: strings.Replace(notesV1, "primary key (id)", "primary key (id, body)", 1)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Step(tc.dialect, tc.before, tc.after)
			if err != nil {
				t.Fatal(err)
			}
			var rules []string
			for _, f := range got {
				rules = append(rules, f.Rule+" "+f.Column)
				if _, ok := Rules[f.Rule]; !ok {
					t.Errorf("rule %s is not in Rules", f.Rule)
				}
			}
			if strings.Join(rules, "; ") != strings.Join(tc.want, "; ") {
				t.Fatalf("findings %q, want %q: %+v", rules, tc.want, got)
			}
			for _, w := range tc.words {
				if !strings.Contains(got[0].Message, w) {
					t.Errorf("message %q does not say %q", got[0].Message, w)
				}
			}
		})
	}
}

func TestOnlyRulesThatLoseDataAreDestructive(t *testing.T) {
	var destructive []string
	for _, id := range []string{"DS102", "DS103", "BC101", "BC102", "MF101", "MF102", "MF103", "MF104", "LT101", "PH101", "PH102", "PH103", "PH104"} {
		if (Finding{Rule: id}).Destructive() {
			destructive = append(destructive, id)
		}
	}
	if got := strings.Join(destructive, " "); got != "DS102 DS103 PH101" {
		t.Fatalf("destructive rules: %s, want DS102 DS103 PH101", got)
	}
	if len(Rules) != 13 {
		t.Errorf("Rules has %d rules, the test names 13: keep them in step", len(Rules))
	}
}

func TestMergeReportsARuleOnAColumnOnceAcrossDialects(t *testing.T) {
	sqlite := []Finding{{Rule: "DS103", Table: "t", Column: "a", Message: "from sqlite"}, {Rule: "PH103", Table: "t", Column: "b", Message: "sqlite only"}}
	pg := []Finding{{Rule: "DS103", Table: "t", Column: "a", Message: "from postgres"}, {Rule: "MF103", Table: "t", Column: "c", Message: "pg"}}
	got := Merge(sqlite, pg)
	var s []string
	for _, f := range got {
		s = append(s, f.Rule+" "+f.Column+" "+f.Message)
	}
	if want := "DS103 a from sqlite; MF103 c pg; PH103 b sqlite only"; strings.Join(s, "; ") != want {
		t.Fatalf("Merge = %q, want %q", strings.Join(s, "; "), want)
	}
}

func TestAnUnreadableTextIsAnError(t *testing.T) {
	if _, err := Step("sqlite", "column a\n", notesV1); err == nil || !strings.Contains(err.Error(), "lint: before") {
		t.Fatalf("err = %v, want one naming the text before", err)
	}
}
