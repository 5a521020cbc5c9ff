// Package report holds the status report of a system: what `host status`
// prints, what `host run` shows before deciding, and what the admin pages
// render. Its JSON form is part of the contract.
package report

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/packhost/packhost/host/manifest"
	"github.com/packhost/packhost/internal/tablestate"
)

// Exit codes of SPEC, shared by `host run` and `host status`.
const (
	ExitOK             = 0
	ExitError          = 1
	ExitUsage          = 2
	ExitCodeUpdates    = 3
	ExitDBUpdates      = 4
	ExitSchemaConflict = 5
)

// Report is the state of one system directory and its database.
type Report struct {
	Root           string          `json:"root"`
	Database       string          `json:"database"`
	Packs          []Pack          `json:"packs"`
	PendingUpdates []PendingUpdate `json:"pending_updates"`
	// Problems are things that stop the host from serving as it should
	// (a pack that did not start, ...), one sentence each.
	Problems []string `json:"problems"`
	// Standing are the Problems that are not about one pack that did not
	// start (an interrupted install, no core pack, two packs claiming one
	// table): `host run` serves without a pack that did not start, but
	// not past these.
	Standing []string `json:"-"`
	// Warnings are things the operator should look at that do not stop
	// the host (an update feed that has not verified for long).
	Warnings []string `json:"warnings,omitempty"`
	// Hints say what to do next.
	Hints    []string `json:"hints"`
	ExitCode int      `json:"exit_code"`
}

// Pack is one installed pack.
type Pack struct {
	ID          string `json:"id"`
	Version     string `json:"version"`
	Path        string `json:"path"`
	Description string `json:"description,omitempty"`
	Running     bool   `json:"running"`
	// CheckFailed says the pack started but its CheckSchema failed (Error
	// says how).
	CheckFailed bool    `json:"check_failed,omitempty"`
	Error       string  `json:"error,omitempty"`
	Tables      []Table `json:"tables"`
}

// Table is one table of a pack.
type Table struct {
	Name             string   `json:"name"`
	InstalledVersion int      `json:"installed_version"`
	CodeVersion      int      `json:"code_version"`
	State            string   `json:"state"`
	MatchedVersion   int      `json:"matched_version,omitempty"`
	Detail           string   `json:"detail,omitempty"`
	Diff             string   `json:"diff,omitempty"`
	DriftColumns     []string `json:"drift_columns,omitempty"`
}

// PendingUpdate is an update zip waiting in Updates_Pending.
type PendingUpdate struct {
	File    string `json:"file"`
	Size    int64  `json:"size"`
	PackID  string `json:"pack_id,omitempty"`
	Version string `json:"version,omitempty"`
	// InstalledVersion is the version it replaces; empty for a new pack.
	InstalledVersion string `json:"installed_version,omitempty"`
	MinHostVersion   string `json:"min_host_version,omitempty"`
	// Signature is "signed" (SignedBy names the trusted key), "unsigned",
	// "invalid", or "unverified" (signed, but no key is trusted).
	Signature string              `json:"signature,omitempty"`
	SignedBy  string              `json:"signed_by,omitempty"`
	WhatsNew  string              `json:"whats_new,omitempty"`
	DBChanges []manifest.DBChange `json:"db_changes,omitempty"`
	// Problems are why the zip cannot be installed, found before anything
	// would change (the zip, its binary, this database).
	Problems []string `json:"problems,omitempty"`
	// Warnings are what could not be checked before the install, and what
	// the install does about it.
	Warnings []string `json:"warnings,omitempty"`
}

// Finish makes the report's lists non-nil, so that its JSON has lists
// where it has nothing to say. The exit code and hints are host/decide's
// (decide.Annotate).
func (r *Report) Finish() {
	if r.Packs == nil {
		r.Packs = []Pack{}
	}
	if r.PendingUpdates == nil {
		r.PendingUpdates = []PendingUpdate{}
	}
	if r.Problems == nil {
		r.Problems = []string{}
	}
	if r.Hints == nil {
		r.Hints = []string{}
	}
}

// PendingProblems reports whether a pending zip cannot be installed.
func (r *Report) PendingProblems() bool {
	for _, u := range r.PendingUpdates {
		if len(u.Problems) > 0 {
			return true
		}
	}
	return false
}

// Conflict reports whether a table is newer than its code, drifted, or at
// another registered version than recorded: no upgrade may run past it.
func (r *Report) Conflict() bool { return r.any(tablestate.Conflict) }

// NeedsUpgrade reports whether a table is missing or outdated.
func (r *Report) NeedsUpgrade() bool { return r.any(tablestate.NeedsUpgrade) }

func (r *Report) Has(state string) bool {
	return r.any(func(s string) bool { return s == state })
}

// any reports whether a table's state satisfies f.
func (r *Report) any(f func(state string) bool) bool {
	for _, p := range r.Packs {
		for _, t := range p.Tables {
			if f(t.State) {
				return true
			}
		}
	}
	return false
}

// WriteJSON writes the report as indented JSON.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// WriteText writes the report for humans: aligned tables.
func (r *Report) WriteText(w io.Writer) error {
	fmt.Fprintf(w, "System    %s\nDatabase  %s\n\n", r.Root, r.Database)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "PACK\tVERSION\tTABLE\tINSTALLED\tCODE\tSTATE")
	if len(r.Packs) == 0 {
		fmt.Fprintln(tw, "(no packs installed)\t\t\t\t\t")
	}
	for _, p := range r.Packs {
		if !p.Running {
			state := "not running"
			if p.CheckFailed {
				state = "check failed"
			}
			fmt.Fprintf(tw, "%s\t%s\t-\t-\t-\t%s\n", p.ID, Dash(p.Version), state)
			continue
		}
		if len(p.Tables) == 0 {
			fmt.Fprintf(tw, "%s\t%s\t(no tables)\t\t\t\n", p.ID, p.Version)
		}
		for i, t := range p.Tables {
			id, ver := p.ID, p.Version
			if i > 0 {
				id, ver = "", ""
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%s\n", id, ver, t.Name, t.InstalledVersion, t.CodeVersion, t.State)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, p := range r.Packs {
		for _, t := range p.Tables {
			if t.Detail == "" && t.Diff == "" {
				continue
			}
			fmt.Fprintf(w, "\n%s.%s (%s): %s\n", p.ID, t.Name, t.State, t.Detail)
			if t.Diff != "" {
				fmt.Fprintf(w, "  the version's schema (-) against the live table (+):\n%s\n", indent(t.Diff, "    "))
			}
		}
	}
	fmt.Fprintln(w)
	if len(r.PendingUpdates) == 0 {
		fmt.Fprintln(w, "Pending updates: none")
	} else {
		fmt.Fprintln(w, "Pending updates:")
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "  FILE\tPACK\tINSTALLED\tVERSION\tSIGNATURE\tSIZE\tPROBLEMS")
		for _, u := range r.PendingUpdates {
			sig := Dash(u.Signature)
			if u.SignedBy != "" {
				sig += " (" + u.SignedBy + ")"
			}
			// One line per zip: each problem's first line; the whole of
			// each follows the table.
			var first []string
			for _, p := range u.Problems {
				l, rest, long := strings.Cut(p, "\n")
				if long && rest != "" {
					l = strings.TrimSuffix(l, ":") + " (below)"
				}
				first = append(first, l)
			}
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\t%d\t%s\n", u.File, Dash(u.PackID), Dash(u.InstalledVersion), Dash(u.Version), sig, u.Size, Dash(strings.Join(first, "; ")))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		for _, u := range r.PendingUpdates {
			writePendingDetails(w, u)
		}
	}
	for _, p := range r.Problems {
		fmt.Fprintf(w, "\nProblem: %s\n", p)
	}
	for _, p := range r.Warnings {
		fmt.Fprintf(w, "\nWarning: %s\n", p)
	}
	for _, h := range r.Hints {
		fmt.Fprintf(w, "\nNext: %s\n", h)
	}
	_, err := fmt.Fprintf(w, "\nExit code %d (%s)\n", r.ExitCode, ExitMeaning(r.ExitCode))
	return err
}

// ExitMeaning names an exit code.
func ExitMeaning(code int) string {
	switch code {
	case ExitOK:
		return "ok"
	case ExitError:
		return "error"
	case ExitUsage:
		return "usage"
	case ExitCodeUpdates:
		return "code updates pending"
	case ExitDBUpdates:
		return "database updates needed"
	case ExitSchemaConflict:
		return "schema conflict"
	}
	return "unknown"
}

// Dash shows an empty value as "-" in aligned tables.
func Dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// writePendingDetails writes what a pending zip brings and what stands in
// its way, when there is more than its row says.
func writePendingDetails(w io.Writer, u PendingUpdate) {
	long := false
	for _, p := range u.Problems {
		long = long || strings.Contains(p, "\n")
	}
	if u.WhatsNew == "" && len(u.DBChanges) == 0 && len(u.Warnings) == 0 && !long {
		return
	}
	name := u.File
	if u.PackID != "" {
		name = u.PackID + " " + u.Version
	}
	fmt.Fprintf(w, "\n  %s:\n", name)
	if u.WhatsNew != "" {
		fmt.Fprintln(w, indent(u.WhatsNew, "    "))
	}
	for _, c := range u.DBChanges {
		d := ""
		if c.Destructive {
			d = " (destructive)"
		}
		fmt.Fprintf(w, "    table %s %d -> %d: %s%s\n", c.Table, c.From, c.To, c.Summary, d)
		for _, f := range c.Lint {
			fmt.Fprintf(w, "      lint %s: %s\n", f.Rule, f.Message)
		}
	}
	if long {
		for _, p := range u.Problems {
			fmt.Fprintf(w, "    problem: %s\n", strings.TrimPrefix(indent(p, "      "), "      "))
		}
	}
	for _, x := range u.Warnings {
		fmt.Fprintf(w, "    warning: %s\n", x)
	}
}

// indent prefixes every line of s.
func indent(s, prefix string) string {
	s = strings.TrimRight(s, "\n")
	return prefix + strings.ReplaceAll(s, "\n", "\n"+prefix)
}
