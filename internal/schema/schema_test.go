package schema

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"gorm.io/gorm"

	"github.com/packhost/packhost/internal/dbtest"
)

func exec(t *testing.T, db *gorm.DB, stmts ...string) {
	t.Helper()
	for _, s := range stmts {
		if err := db.Exec(s).Error; err != nil {
			t.Fatalf("%s: %v", s, err)
		}
	}
}

func describe(t *testing.T, db *gorm.DB, table string) string {
	t.Helper()
	text, exists, err := Describe(t.Context(), db, table)
	if err != nil {
		t.Fatalf("Describe(%s): %v", table, err)
	}
	if !exists {
		t.Fatalf("Describe(%s): exists = false, want true", table)
	}
	return text
}

// usersInOneGo and usersStepByStep build the same table: the second adds
// columns in another order and makes the unique constraint an index.
var (
	usersInOneGo = []string{
		`CREATE TABLE users (
			id integer NOT NULL PRIMARY KEY,
			email varchar(255) NOT NULL DEFAULT '',
			name text,
			created_at timestamp,
			UNIQUE (email)
		)`,
		`CREATE INDEX idx_users_created ON users (created_at)`,
	}
	usersStepByStep = []string{
		`CREATE TABLE users (created_at timestamp, id integer NOT NULL PRIMARY KEY)`,
		`CREATE INDEX idx_users_created ON users (created_at)`,
		`ALTER TABLE users ADD COLUMN name text`,
		`ALTER TABLE users ADD COLUMN email varchar(255) NOT NULL DEFAULT ''`,
		`CREATE UNIQUE INDEX users_email_unique ON users (email)`,
	}
	memberships = []string{
		`CREATE TABLE memberships (
			group_id integer NOT NULL,
			user_id integer NOT NULL,
			role varchar(20) NOT NULL DEFAULT 'member',
			"Note" text,
			PRIMARY KEY (user_id, group_id)
		)`,
		`CREATE INDEX idx_memberships_role ON memberships (role DESC, group_id)`,
	}
)

func TestTheTextDoesNotDependOnColumnCreationOrder(t *testing.T) {
	dbtest.ForEach(t, func(t *testing.T, db dbtest.DB) {
		exec(t, db.Gorm, usersInOneGo...)
		inOneGo := describe(t, db.Gorm, "users")
		exec(t, db.Gorm, `DROP TABLE users`)
		exec(t, db.Gorm, usersStepByStep...)
		stepByStep := describe(t, db.Gorm, "users")
		if inOneGo != stepByStep {
			diff, _ := Diff(inOneGo, stepByStep)
			t.Errorf("CREATE in one go and CREATE + ALTER give different texts:\n%s", diff)
		}
	})
}

func TestTheTextNamesTypesConstraintsAndIndexes(t *testing.T) {
	want := map[string]map[string]string{
		"sqlite": {
			"users": `table users
column created_at timestamp
column email varchar(255) not null default ''
column id integer not null
column name text
primary key (id)
unique (email)
index idx_users_created (created_at)
`,
			"memberships": `table memberships
column "Note" text
column group_id integer not null
column role varchar(20) not null default 'member'
column user_id integer not null
primary key (user_id, group_id)
index idx_memberships_role (role desc, group_id)
`,
		},
		"postgres": {
			"users": `table users
column created_at timestamp without time zone
column email character varying(255) not null default ''::character varying
column id integer not null
column name text
primary key (id)
unique (email)
index idx_users_created (created_at)
`,
			"memberships": `table memberships
column "Note" text
column group_id integer not null
column role character varying(20) not null default 'member'::character varying
column user_id integer not null
primary key (user_id, group_id)
index idx_memberships_role (role desc, group_id)
`,
		},
	}
	dbtest.ForEach(t, func(t *testing.T, db dbtest.DB) {
		exec(t, db.Gorm, usersInOneGo...)
		exec(t, db.Gorm, memberships...)
		for _, table := range []string{"users", "memberships"} {
			if got := describe(t, db.Gorm, table); got != want[db.Name][table] {
				diff, _ := Diff(want[db.Name][table], got)
				t.Errorf("Describe(%s) differs from the expected text (- expected, + got):\n%s", table, diff)
			}
		}
	})
}

func TestAMissingTableDoesNotExist(t *testing.T) {
	dbtest.ForEach(t, func(t *testing.T, db dbtest.DB) {
		exec(t, db.Gorm, `CREATE TABLE present (id integer)`, `CREATE VIEW a_view AS SELECT id FROM present`)
		for _, table := range []string{"no_such_table", "a_view", "present'; --"} {
			text, exists, err := Describe(t.Context(), db.Gorm, table)
			if err != nil || exists || text != "" {
				t.Errorf("Describe(%q) = %q, %v, %v; want \"\", false, nil", table, text, exists, err)
			}
		}
	})
}

func TestDiffNamesTheAddedColumn(t *testing.T) {
	dbtest.ForEach(t, func(t *testing.T, db dbtest.DB) {
		exec(t, db.Gorm, usersInOneGo...)
		registered := describe(t, db.Gorm, "users")
		if diff, cols := Diff(registered, describe(t, db.Gorm, "users")); diff != "" || cols != nil {
			t.Errorf("Diff of equal texts = %q, %v; want empty", diff, cols)
		}

		exec(t, db.Gorm, `ALTER TABLE users ADD COLUMN nickname varchar(40)`)
		live := describe(t, db.Gorm, "users")
		diff, cols := Diff(registered, live)
		if !reflect.DeepEqual(cols, []string{"nickname"}) {
			t.Errorf("Diff columns = %v, want [nickname]", cols)
		}
		var plus []string
		for _, l := range strings.Split(strings.TrimSuffix(diff, "\n"), "\n") {
			switch {
			case strings.HasPrefix(l, "+ "):
				plus = append(plus, l)
			case strings.HasPrefix(l, "- "):
				t.Errorf("Diff removes a line after a column was only added: %q", l)
			}
		}
		if len(plus) != 1 || !strings.HasPrefix(plus[0], "+ column nickname ") {
			t.Errorf("Diff added lines %q, want one \"+ column nickname ...\" line; diff:\n%s", plus, diff)
		}
		t.Logf("diff after ALTER TABLE users ADD COLUMN nickname:\n%s", diff)
	})
}

func TestDiff(t *testing.T) {
	registered := "table t\ncolumn a integer\ncolumn \"Odd \"\"x\"\" name\" text\ncolumn b text\nprimary key (a)\n"
	for _, tc := range []struct {
		name, live, diff string
		cols             []string
	}{
		{
			name: "equal texts give no diff",
			live: registered,
		},
		{
			name: "a changed type shows both lines and names the column",
			live: "table t\ncolumn a bigint\ncolumn \"Odd \"\"x\"\" name\" text\ncolumn b text\nprimary key (a)\n",
			diff: "  table t\n- column a integer\n+ column a bigint\n  column \"Odd \"\"x\"\" name\" text\n  column b text\n  primary key (a)\n",
			cols: []string{"a"},
		},
		{
			name: "a dropped quoted column is named unquoted",
			live: "table t\ncolumn a integer\ncolumn b text\nprimary key (a)\n",
			diff: "  table t\n  column a integer\n- column \"Odd \"\"x\"\" name\" text\n  column b text\n  primary key (a)\n",
			cols: []string{`Odd "x" name`},
		},
		{
			name: "a changed index names no column",
			live: "table t\ncolumn a integer\ncolumn \"Odd \"\"x\"\" name\" text\ncolumn b text\nprimary key (a)\nindex t_b (b)\n",
			diff: "  table t\n  column a integer\n  column \"Odd \"\"x\"\" name\" text\n  column b text\n  primary key (a)\n+ index t_b (b)\n",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			diff, cols := Diff(registered, tc.live)
			if diff != tc.diff {
				t.Errorf("diff:\n%s\nwant:\n%s", diff, tc.diff)
			}
			if !reflect.DeepEqual(cols, tc.cols) {
				t.Errorf("columns = %#v, want %#v", cols, tc.cols)
			}
		})
	}
}

// account is a table as a pack author would declare it for AutoMigrate.
type account struct {
	ID        uint   `gorm:"primaryKey"`
	Email     string `gorm:"size:255;not null;default:'';uniqueIndex"`
	Name      string
	Balance   int64 `gorm:"not null;default:0"`
	CreatedAt time.Time
	DeletedAt gorm.DeletedAt `gorm:"index"`
}

// TestShowAutoMigrateAndHandWrittenTexts is for the reader: it logs the texts
// of the same table made by GORM AutoMigrate and by hand-written SQL.
func TestShowAutoMigrateAndHandWrittenTexts(t *testing.T) {
	dbtest.ForEach(t, func(t *testing.T, db dbtest.DB) {
		if err := db.Gorm.AutoMigrate(&account{}); err != nil {
			t.Fatalf("AutoMigrate: %v", err)
		}
		t.Logf("AutoMigrate:\n%s", describe(t, db.Gorm, "accounts"))
		exec(t, db.Gorm, `DROP TABLE accounts`, `CREATE TABLE accounts (
			id integer NOT NULL PRIMARY KEY,
			email varchar(255) NOT NULL DEFAULT '' UNIQUE,
			name text,
			balance bigint NOT NULL DEFAULT 0,
			created_at timestamp,
			deleted_at timestamp
		)`, `CREATE INDEX idx_accounts_deleted_at ON accounts (deleted_at)`)
		t.Logf("hand-written SQL:\n%s", describe(t, db.Gorm, "accounts"))
	})
}
