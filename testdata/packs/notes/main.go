// Command notes is a third-party test pack with one table whose history
// grows with each release. Tests build it with -ldflags to pick the id and
// the release:
//
//	-X main.id=notes -X main.release=2 -X main.failAt=0 -X main.extra=1
//	-X main.history=changed -X main.step4=dropcol -X main.version=2.0.1
package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"

	"gorm.io/gorm"

	"github.com/packhost/packhost/plugins/sdk"
)

var (
	id      = "notes"
	release = "3"
	// failAt, when set, makes the step to that version fail halfway: after
	// its first statement ran.
	failAt = "0"
	// table, when set, names the table instead of the id (to make two
	// packs claim one table).
	table = ""
	// hangAt, when set, makes the step to that version wait, after its
	// statements ran, until the host cancels the upgrade.
	hangAt = "0"
	// extra, when "1", declares a second table, <table>_extra with one
	// step, before the first: a release that adds a table.
	extra = ""
	// fk, when "1", gives the table a column referencing core's users:
	// the pack cannot be upgraded before core's tables exist.
	fk = ""
	// history, when "changed", is the release whose author removed the
	// step "adds notes.author" from the middle and added "adds
	// notes.word_count" at the end: as many steps, another history.
	history = ""
	// step4 adds a fourth step: "dropcol" drops notes.pinned without
	// being marked Destructive; "notnull" adds notes.priority NOT NULL
	// without a default (fine on an empty table, not on one with rows).
	step4 = ""
	// version, when set, is the pack's version instead of 1.<release>.0.
	version = ""
)

func main() {
	r, _ := strconv.Atoi(release)
	fail, _ := strconv.Atoi(failAt)
	hang, _ := strconv.Atoi(hangAt)
	t := tableName()
	create := `CREATE TABLE ` + t + ` (id integer PRIMARY KEY, body text NOT NULL)`
	if fk == "1" {
		create = `CREATE TABLE ` + t + ` (id integer PRIMARY KEY, body text NOT NULL, user_id integer REFERENCES users (id))`
	}
	steps := []sdk.Step{
		{Summary: "creates notes (id, body)", Up: sdk.SQL(create)},
		{Summary: "adds notes.author", Up: sdk.SQL(
			`ALTER TABLE `+t+` ADD COLUMN author varchar(100) NOT NULL DEFAULT ''`,
			`CREATE INDEX idx_`+t+`_author ON `+t+` (author)`)},
		{Summary: "adds notes.pinned", Up: sdk.SQL(
			`ALTER TABLE ` + t + ` ADD COLUMN pinned boolean NOT NULL DEFAULT false`)},
	}
	if history == "changed" {
		steps = []sdk.Step{steps[0], steps[2], {Summary: "adds notes.word_count", Up: sdk.SQL(
			`ALTER TABLE ` + t + ` ADD COLUMN word_count integer NOT NULL DEFAULT 0`)}}
	}
	if r < 1 || r > len(steps) {
		r = len(steps)
	}
	steps = steps[:r]
	switch step4 {
	case "dropcol":
		steps = append(steps, sdk.Step{Summary: "drops notes.pinned", Up: sdk.SQL(`ALTER TABLE ` + t + ` DROP COLUMN pinned`)})
	case "notnull":
		steps = append(steps, sdk.Step{Summary: "adds notes.priority", Up: addPriority(t)})
	}
	for i := range steps {
		steps[i].Up = counted(i+1, steps[i].Up, i+1 == fail, i+1 == hang)
	}
	tables := []sdk.Table{{Name: t, Steps: steps}}
	if extra == "1" {
		x := t + "_extra"
		tables = append([]sdk.Table{{Name: x, Steps: []sdk.Step{{Summary: "creates " + x + " (id, label)", Up: sdk.SQL(
			`CREATE TABLE ` + x + ` (id integer PRIMARY KEY, label text NOT NULL)`)}}}}, tables...)
	}
	v := fmt.Sprintf("1.%d.0", r)
	if version != "" {
		v = version
	}
	var reads []string
	if fk == "1" {
		reads = []string{"core.users"}
	}
	sdk.Serve(sdk.Pack{
		ID:          id,
		Version:     v,
		Description: "Notes, a test pack.",
		Tables:      tables,
		DependsOn:   []string{"core"},
		Reads:       reads,
		Pages:       pages(t),
	})
}

// pages serves POST <prefix>add, which inserts a note and answers its id
// once committed (tests count the acknowledged writes), and GET
// <prefix>count.
func pages(table string) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /{prefix}/add", func(w http.ResponseWriter, r *http.Request) {
		db, err := sdk.DB(r.Context())
		if err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		var id int64
		if err := db.Raw(`INSERT INTO `+table+` (id, body) VALUES ((SELECT coalesce(max(id), 0) + 1 FROM `+table+`), ?) RETURNING id`,
			r.FormValue("body")).Scan(&id).Error; err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, id)
	})
	mux.HandleFunc("GET /{prefix}/count", func(w http.ResponseWriter, r *http.Request) {
		db, err := sdk.DB(r.Context())
		if err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		var n int64
		if err := db.Raw(`SELECT count(*) FROM ` + table).Scan(&n).Error; err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, n)
	})
	return mux
}

// addPriority adds a NOT NULL column without a default: on PostgreSQL in
// place, on SQLite (which refuses that in ALTER TABLE) by rebuilding the
// table. Either fails on a table with rows.
func addPriority(t string) func(context.Context, *gorm.DB) error {
	return func(ctx context.Context, tx *gorm.DB) error {
		if tx.Dialector.Name() == "postgres" {
			return sdk.SQL(`ALTER TABLE `+t+` ADD COLUMN priority integer NOT NULL`)(ctx, tx)
		}
		return sdk.SQL(
			`CREATE TABLE `+t+`_new (id integer PRIMARY KEY, body text NOT NULL, author varchar(100) NOT NULL DEFAULT '', pinned boolean NOT NULL DEFAULT false, priority integer NOT NULL)`,
			`INSERT INTO `+t+`_new (id, body, author, pinned) SELECT id, body, author, pinned FROM `+t,
			`DROP TABLE `+t,
			`ALTER TABLE `+t+`_new RENAME TO `+t,
			`CREATE INDEX idx_`+t+`_author ON `+t+` (author)`,
		)(ctx, tx)
	}
}

// tableName keeps packs built with other ids from sharing a table.
func tableName() string {
	if table != "" {
		return table
	}
	if id == "notes" {
		return "notes"
	}
	return "notes_" + sanitize(id)
}

func sanitize(s string) string {
	b := []byte(s)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9') {
			b[i] = '_'
		}
	}
	return string(b)
}

// counted wraps a step so that each run is appended to steps.log beside the
// binary (tests count them), and optionally fails after the step's work,
// or waits until ctx is cancelled. A replay on a scratch database (the
// schema history) is neither counted nor failed nor held.
func counted(to int, up func(context.Context, *gorm.DB) error, fail, hang bool) func(context.Context, *gorm.DB) error {
	return func(ctx context.Context, tx *gorm.DB) error {
		if sdk.Replaying(ctx) {
			return up(ctx, tx)
		}
		if exe, err := os.Executable(); err == nil {
			f, err := os.OpenFile(filepath.Join(filepath.Dir(exe), "steps.log"), os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
			if err == nil {
				fmt.Fprintf(f, "%s %d\n", tableName(), to)
				f.Close()
			}
		}
		if err := up(ctx, tx); err != nil {
			return err
		}
		if fail {
			return errors.New("simulated failure after the step's statements ran")
		}
		if hang {
			<-ctx.Done()
			return fmt.Errorf("cancelled while waiting (test pack): %w", ctx.Err())
		}
		return nil
	}
}
