// Command notes is a third-party test pack with one table whose history
// grows with each release. Tests build it with -ldflags to pick the id and
// the release:
//
//	-X main.id=notes -X main.release=2 -X main.failAt=0
package main

import (
	"context"
	"errors"
	"fmt"
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
)

func main() {
	r, _ := strconv.Atoi(release)
	fail, _ := strconv.Atoi(failAt)
	t := tableName()
	steps := []sdk.Step{
		{Summary: "creates notes (id, body)", Up: sdk.SQL(
			`CREATE TABLE ` + t + ` (id integer PRIMARY KEY, body text NOT NULL)`)},
		{Summary: "adds notes.author", Up: sdk.SQL(
			`ALTER TABLE `+t+` ADD COLUMN author varchar(100) NOT NULL DEFAULT ''`,
			`CREATE INDEX idx_`+t+`_author ON `+t+` (author)`)},
		{Summary: "adds notes.pinned", Up: sdk.SQL(
			`ALTER TABLE ` + t + ` ADD COLUMN pinned boolean NOT NULL DEFAULT false`)},
	}
	if r < 1 || r > len(steps) {
		r = len(steps)
	}
	steps = steps[:r]
	for i := range steps {
		steps[i].Up = counted(i+1, steps[i].Up, i+1 == fail)
	}
	sdk.Serve(sdk.Pack{
		ID:          id,
		Version:     fmt.Sprintf("1.%d.0", r),
		Description: "Notes, a test pack.",
		Tables:      []sdk.Table{{Name: tableName(), Steps: steps}},
		DependsOn:   []string{"core"},
	})
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
// binary (tests count them), and optionally fails after the step's work.
func counted(to int, up func(context.Context, *gorm.DB) error, fail bool) func(context.Context, *gorm.DB) error {
	return func(ctx context.Context, tx *gorm.DB) error {
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
		return nil
	}
}
