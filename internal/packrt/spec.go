// Package packrt is the table engine that runs inside every pack process:
// it serves the pack protocol to the host, checks, upgrades, repairs, backs
// up and restores the pack's tables, and serves the pack's pages. Pack
// authors never see it: plugins/sdk turns a pack's declaration into a Spec
// and hands it to Serve.
package packrt

import (
	"context"
	"fmt"
	"net/http"
	"strings"

	"github.com/Masterminds/semver/v3"
	"gorm.io/gorm"

	"github.com/packhost/packhost/internal/meta"
	"github.com/packhost/packhost/internal/naming"
)

// SDKVersion is the version of the pack runtime, reported to the host by
// Describe and written into backups.
const SDKVersion = "0.2.0"

// StepFunc changes a table inside a transaction.
type StepFunc = func(ctx context.Context, tx *gorm.DB) error

// Spec is a pack as the runtime runs it (plugins/sdk.Pack, checked).
type Spec struct {
	ID          string
	Version     string
	Description string
	Tables      []Table
	DependsOn   []string
	// Reads are other packs' tables the pack reads: "pack.table".
	Reads  []string
	Pages  http.Handler
	Prefix string
}

// Table is one table and its history: Steps[i] takes it from version i to
// i+1; Create, when set, makes it at the latest version in one go.
type Table struct {
	Name   string
	Steps  []Step
	Create StepFunc
}

// Step is one released change of a table.
type Step struct {
	Summary     string
	Destructive bool
	Up          StepFunc
}

// Version is the table's code version: the number of its steps.
func (t Table) Version() int { return len(t.Steps) }

// Validate reports the first problem that would stop the host from running
// the pack: a bad id or version, a table without steps, a step without Up,
// a duplicate or reserved table name.
func (p Spec) Validate() error {
	if !naming.PackID.MatchString(p.ID) {
		return fmt.Errorf("pack id %q: must match %s", p.ID, naming.PackID)
	}
	if _, err := semver.StrictNewVersion(p.Version); err != nil {
		return fmt.Errorf("pack %s: version %q is not semver (for example 1.2.0): %w", p.ID, p.Version, err)
	}
	seen := map[string]bool{}
	for _, t := range p.Tables {
		switch {
		case !naming.TableName.MatchString(t.Name):
			return fmt.Errorf("pack %s: table name %q: must match %s", p.ID, t.Name, naming.TableName)
		case meta.IsMetaTable(t.Name) || strings.HasPrefix(t.Name, "packhost_"):
			return fmt.Errorf("pack %s: table %s is owned by the host (names starting with packhost_ are the host's)", p.ID, t.Name)
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
		if !naming.PackID.MatchString(d) {
			return fmt.Errorf("pack %s: dependency %q is not a pack id", p.ID, d)
		}
	}
	for _, r := range p.Reads {
		pack, table, ok := strings.Cut(r, ".")
		switch {
		case !ok || !naming.PackID.MatchString(pack) || !naming.TableName.MatchString(table):
			return fmt.Errorf("pack %s: reads %q: want pack.table, such as core.users", p.ID, r)
		case pack == p.ID:
			return fmt.Errorf("pack %s: reads %q: its own tables need no declaration", p.ID, r)
		}
	}
	if p.Prefix != "" && (p.Prefix[0] != '/' || p.Prefix[len(p.Prefix)-1] != '/') {
		return fmt.Errorf("pack %s: prefix %q must start and end with /", p.ID, p.Prefix)
	}
	return nil
}

// PagePrefix is the path the pack's pages live under: Prefix, or /<id>/.
func (p Spec) PagePrefix() string {
	if p.Prefix != "" {
		return p.Prefix
	}
	return "/" + p.ID + "/"
}

func (p Spec) table(name string) (Table, bool) {
	for _, t := range p.Tables {
		if t.Name == name {
			return t, true
		}
	}
	return Table{}, false
}
