package sdk

import (
	"context"
	"fmt"
	"net/http"
	"regexp"

	"github.com/Masterminds/semver/v3"
	"gorm.io/gorm"
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
	// sdktest checks that.
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
	// Destructive marks a step that drops or rewrites data.
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

var idPattern = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{1,63}$`)

// tableNamePattern keeps table names to what both databases accept unquoted.
var tableNamePattern = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,62}$`)

// Validate reports the first problem that would stop the host from running
// the pack: a bad id or version, a table without steps, a step without Up,
// a duplicate or reserved table name.
func (p Pack) Validate() error {
	if !idPattern.MatchString(p.ID) {
		return fmt.Errorf("pack id %q: must match %s", p.ID, idPattern)
	}
	if _, err := semver.StrictNewVersion(p.Version); err != nil {
		return fmt.Errorf("pack %s: version %q is not semver (for example 1.2.0): %w", p.ID, p.Version, err)
	}
	seen := map[string]bool{}
	for _, t := range p.Tables {
		switch {
		case !tableNamePattern.MatchString(t.Name):
			return fmt.Errorf("pack %s: table name %q: must match %s", p.ID, t.Name, tableNamePattern)
		case t.Name == "pack_settings" || t.Name == "schema_registry":
			return fmt.Errorf("pack %s: table %s is owned by the host", p.ID, t.Name)
		case seen[t.Name]:
			return fmt.Errorf("pack %s: table %s is declared twice", p.ID, t.Name)
		case len(t.Steps) == 0:
			return fmt.Errorf("pack %s: table %s has no steps; Steps[0] must create it", p.ID, t.Name)
		}
		seen[t.Name] = true
		for i, s := range t.Steps {
			if s.Up == nil {
				return fmt.Errorf("pack %s: table %s: step to version %d has no Up function", p.ID, t.Name, i+1)
			}
		}
	}
	for _, d := range p.DependsOn {
		if d == p.ID {
			return fmt.Errorf("pack %s: depends on itself", p.ID)
		}
		if !idPattern.MatchString(d) {
			return fmt.Errorf("pack %s: dependency %q is not a pack id", p.ID, d)
		}
	}
	if p.Prefix != "" && (p.Prefix[0] != '/' || p.Prefix[len(p.Prefix)-1] != '/') {
		return fmt.Errorf("pack %s: prefix %q must start and end with /", p.ID, p.Prefix)
	}
	return nil
}

func (p Pack) prefix() string {
	if p.Prefix != "" {
		return p.Prefix
	}
	return "/" + p.ID + "/"
}

func (p Pack) table(name string) (Table, bool) {
	for _, t := range p.Tables {
		if t.Name == name {
			return t, true
		}
	}
	return Table{}, false
}
