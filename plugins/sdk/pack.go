package sdk

import (
	"context"
	"fmt"
	"net/http"

	"gorm.io/gorm"

	"github.com/packhost/packhost/internal/packrt"
)

// Pack is everything a pack tells the host about itself. It is the one
// required thing a pack author writes; pass it to Serve.
//
// The lifecycle of a pack, as the host drives it:
//
//  1. The host checks the pack binary's sha256 against the installed
//     manifest, then starts it with the database in its environment.
//  2. Serve validates the Pack (id, semver version, tables and steps) and
//     completes the handshake. An invalid Pack exits with the reason on
//     stderr, which the host shows.
//  3. The host calls Describe, then CheckSchema: each table's installed
//     version, code version and live schema are compared. Nothing is
//     written.
//  4. When the operator asks for it (host run --update-db), the host backs
//     up the tables and calls Upgrade: each Step runs in its own
//     transaction together with the version bump and the schema registry
//     row, so a failing step leaves everything as it was.
//  5. While the host serves, Pages (when set) answers requests under Prefix.
//  6. The host stops the pack on exit. If the host dies, the pack notices
//     its parent is gone and exits; open transactions roll back.
type Pack struct {
	// ID names the pack: ^[a-z0-9][a-z0-9._-]{1,63}$. It must match the id
	// in the pack's manifest.
	ID string
	// Version is the pack's semver version, for example "1.4.0".
	Version string
	// Description is one line shown to the operator.
	Description string
	// Tables are the database tables the pack owns, upgraded in this order.
	Tables []Table
	// DependsOn lists pack ids whose tables must be upgraded before this
	// pack's (the core pack always goes first).
	DependsOn []string
	// Reads lists the tables of other packs this pack reads or references
	// with foreign keys, as "pack.table" (such as "core.users"). On
	// PostgreSQL each pack connects as its own database role: it owns its
	// tables, and may read, and reference, these and no other pack's.
	Reads []string

	// Pages, when set, serves the pack's HTTP pages under Prefix. Each
	// request's context is cancelled when the host cancels it.
	Pages http.Handler
	// Prefix is the path the pack's pages live under, such as "/guestbook/".
	// It defaults to "/<id>/".
	Prefix string
}

// Table is one database table a pack owns, with its history.
//
// The table's code version is len(Steps): Steps[0] takes it from version 0
// (not installed) to version 1, Steps[i] from version i to i+1. Steps are
// never edited once released; a change to the table is a new Step.
type Table struct {
	// Name is the table's name in the database.
	Name string
	// Steps reach every version from the one before.
	Steps []Step
	// Create, when set, installs the table directly at the latest version on
	// a database that has no such table, instead of running every step from
	// version 1. The schema it makes must equal the one the steps make;
	// sdktest and `host pack build` check that.
	Create func(ctx context.Context, tx *gorm.DB) error
}

// Version is the table's code version: the number of its steps.
func (t Table) Version() int { return len(t.Steps) }

// Step moves a table from one version to the next. Up runs inside a
// transaction that also records the new version; returning an error rolls
// all of it back.
type Step struct {
	// Summary says what the step changes, for the operator: "adds users.email".
	Summary string
	// Destructive marks a step that drops or rewrites data. `host pack
	// build` refuses a step the lint finds losing data (a dropped column,
	// a narrowed type) unless it is marked so.
	Destructive bool
	// Up performs the step on tx, which is inside a transaction.
	Up func(ctx context.Context, tx *gorm.DB) error
}

// AutoMigrate returns a step function that runs GORM's AutoMigrate for the
// given models: it creates missing tables, columns and indexes.
func AutoMigrate(models ...any) func(ctx context.Context, tx *gorm.DB) error {
	return func(ctx context.Context, tx *gorm.DB) error {
		return tx.WithContext(ctx).AutoMigrate(models...)
	}
}

// SQL returns a step function that executes the statements in order.
func SQL(statements ...string) func(ctx context.Context, tx *gorm.DB) error {
	return func(ctx context.Context, tx *gorm.DB) error {
		for _, s := range statements {
			if err := tx.WithContext(ctx).Exec(s).Error; err != nil {
				return fmt.Errorf("%s: %w", s, err)
			}
		}
		return nil
	}
}

// Validate reports the first problem that would stop the host from running
// the pack: a bad id or version, a table without steps, a step without Up,
// a duplicate or reserved table name.
func (p Pack) Validate() error { return Spec(p).Validate() }

// Spec is the pack as the pack runtime runs it. Serve and the test kit
// (package sdktest) go through it; a pack's own code has no use for it.
func Spec(p Pack) packrt.Spec {
	s := packrt.Spec{
		ID: p.ID, Version: p.Version, Description: p.Description,
		DependsOn: p.DependsOn, Reads: p.Reads, Pages: p.Pages, Prefix: p.Prefix,
	}
	for _, t := range p.Tables {
		rt := packrt.Table{Name: t.Name, Create: t.Create}
		for _, st := range t.Steps {
			rt.Steps = append(rt.Steps, packrt.Step{Summary: st.Summary, Destructive: st.Destructive, Up: st.Up})
		}
		s.Tables = append(s.Tables, rt)
	}
	return s
}
