// Package decide turns what the host found at start (the status report:
// pending update zips and their problems, packs that did not start, table
// states, standing problems) and the operator's flags into what the host
// does next, as data: one function, Next, that `host run` acts on, `host
// status` takes its exit code and hints from, and the admin pages show
// the record of.
package decide

import (
	"fmt"
	"strings"
	"time"

	"github.com/packhost/packhost/host/report"
	"github.com/packhost/packhost/internal/tablestate"
)

// Flags are the run flags that steer the decisions.
type Flags struct {
	InstallUpdates bool
	IgnoreUpdates  bool
	UpdateDB       bool
	NoBackup       bool
	AdminOnly      bool
	Addr           string
	AdminAddr      string
}

// Action is what the host does next.
type Action string

const (
	// Stop: do not serve; exit with Plan.ExitCode.
	Stop Action = "stop"
	// Install the pending update zips, then decide again.
	Install Action = "install"
	// Upgrade the tables that need it (backing up first unless
	// NoBackup), then decide again.
	Upgrade Action = "upgrade"
	// Serve the packs' pages and the admin pages.
	Serve Action = "serve"
	// ServeAdmin serves only the admin pages; every other page answers
	// 503 with the maintenance page (Plan.Reason says why).
	ServeAdmin Action = "serve-admin"
)

// Decision is one thing decided, and why; with what came of it once the
// host acted on it (Outcome), for the record the admin pages show.
type Decision struct {
	Time     time.Time `json:"time"`
	Topic    string    `json:"topic"`
	Decision string    `json:"decision"`
	Why      string    `json:"why"`
	Outcome  string    `json:"outcome,omitempty"`
}

// Plan is what Next decided.
type Plan struct {
	Next Action
	// ExitCode is SPEC's exit code for what was found: what `host status`
	// exits with, and what `host run` exits with when Next is Stop.
	ExitCode int
	// Reason is why only the admin pages are served (ServeAdmin).
	Reason string
	// Error, for a Stop on an error (exit 1), says why in one sentence.
	Error string
	// Decisions are the decisions in order: code updates, packs,
	// database, serving.
	Decisions []Decision
	// Hints say what the operator can do next.
	Hints []string
}

// Next decides from r (as the host found the system) and f. done lists
// the actions already taken in this start (an install is not tried
// twice).
func Next(r *report.Report, f Flags, done ...Action) Plan {
	now := time.Now().UTC()
	p := Plan{ExitCode: report.ExitOK}
	add := func(topic, decision, why string) {
		p.Decisions = append(p.Decisions, Decision{Time: now, Topic: topic, Decision: decision, Why: why})
	}
	p.Hints = hints(r)
	hint := func(h string) { p.Hints = append(p.Hints, h) }
	stop := func(code int) Plan {
		p.Next = Stop
		if p.ExitCode == report.ExitOK {
			p.ExitCode = code
		}
		return p
	}
	didInstall := contains(done, Install)

	// The exit code of what was found, in SPEC's order: an error (1),
	// code updates pending (3), a schema conflict (5), database updates
	// needed (4).
	conflict, needs := r.Conflict(), r.NeedsUpgrade()
	switch {
	case len(r.Problems) > 0:
		p.ExitCode = report.ExitError
	case len(r.PendingUpdates) > 0:
		p.ExitCode = report.ExitCodeUpdates
	case conflict:
		p.ExitCode = report.ExitSchemaConflict
	case needs:
		p.ExitCode = report.ExitDBUpdates
	}

	// Code updates.
	pending := r.PendingUpdates
	switch {
	case len(pending) == 0 && f.InstallUpdates && !didInstall:
		add("code updates", "nothing to install", "--install-updates was given and "+pendingDir+" holds no zip")
	case len(pending) == 0:
		add("code updates", "nothing to install", pendingDir+" holds no zip")
	case f.InstallUpdates && !didInstall:
		if bad := invalid(pending); len(bad) > 0 {
			add("code updates", "install nothing", "these zips cannot be installed: "+strings.Join(bad, "; "))
			hint("fix or remove the zips named above (`host updates reject ZIP` moves one aside with its reason), then start again")
			p.Error = "not installing: " + strings.Join(bad, "; ") + "; nothing was installed"
			p.ExitCode = report.ExitError
			return stop(report.ExitError)
		}
		add("code updates", "install "+files(pending)+" before serving", "--install-updates was given")
		p.Next = Install
		return p
	case f.IgnoreUpdates:
		add("code updates", fmt.Sprintf("serve without installing the %d pending update zip(s): %s", len(pending), files(pending)),
			"--ignore-updates was given")
	default:
		add("code updates", "stop: update zips are pending", files(pending)+" wait in "+pendingDir)
		return stop(report.ExitCodeUpdates)
	}

	// Packs.
	var failed, running []string
	coreRunning := false
	for _, pk := range r.Packs {
		if pk.Running {
			running = append(running, pk.ID+" "+pk.Version)
			coreRunning = coreRunning || pk.ID == "core"
		} else {
			failed = append(failed, pk.ID)
		}
	}
	switch {
	case !coreRunning:
		add("packs", "stop: the core pack is not running", coreWhy(r))
		hint("the core pack is required: reinstall it from its update zip (`host run --install-updates` with its zip in " + pendingDir + ")")
		p.Error = "the core pack is not running (see the problem above), so nothing can be served; reinstall it from its update zip"
		return stop(report.ExitError)
	case len(failed) > 0:
		add("packs", fmt.Sprintf("serve without %s", strings.Join(failed, ", ")),
			"these packs did not start or do not answer (see the problems above); the others serve")
	default:
		add("packs", fmt.Sprintf("serve with every installed pack (%d)", len(running)), "all started: "+strings.Join(running, ", "))
	}
	if other := r.Standing; len(other) > 0 {
		add("problems", "stop", strings.Join(other, "; "))
		p.Error = "not serving: the problems above must be fixed first"
		return stop(report.ExitError)
	}

	// Database.
	var needing []string
	for _, pk := range r.Packs {
		for _, t := range pk.Tables {
			if tablestate.NeedsUpgrade(t.State) {
				needing = append(needing, fmt.Sprintf("%s.%s (%s, %d -> %d)", pk.ID, t.Name, t.State, t.InstalledVersion, t.CodeVersion))
			}
		}
	}
	switch {
	case conflict:
		add("database", "stop: a table is in conflict", "a table is newer than its code, has drifted, or its recorded version is not its schema's; no upgrade runs past it")
		return stop(report.ExitSchemaConflict)
	case len(needing) == 0:
		add("database", "no upgrade", "every table is at its code version")
	case f.UpdateDB && !contains(done, Upgrade):
		backup := "with a backup first"
		if f.NoBackup {
			backup = "without a backup (--no-backup)"
		}
		add("database", "upgrade "+strings.Join(needing, ", ")+" "+backup+", then serve", "--update-db was given")
		p.Next = Upgrade
		return p
	case f.AdminOnly:
		add("database", "leave "+strings.Join(needing, ", ")+" as they are and serve only the admin pages",
			"--admin-only was given; the pages of packs would run on tables their code does not expect")
		p.Reason = "The database needs updates."
	default:
		add("database", "stop: tables need upgrading", strings.Join(needing, ", "))
		return stop(report.ExitDBUpdates)
	}

	// Serving.
	where := f.Addr
	if f.AdminAddr != "" {
		where = f.Addr + " (admin pages on " + f.AdminAddr + ")"
	}
	if f.AdminOnly {
		why := "--admin-only was given"
		if p.Reason != "" {
			why += ": " + p.Reason
		}
		add("serving", "serve only the admin pages on "+where+"; every other page answers 503 with the maintenance page", why)
		p.Next = ServeAdmin
		return p
	}
	add("serving", "serve the packs' pages and the admin pages on "+where, "nothing above stopped the start")
	p.Next = Serve
	return p
}

// Annotate sets r's exit code and hints to those of a start without flags:
// what `host status` reports and exits with.
func Annotate(r *report.Report) {
	r.Finish()
	p := Next(r, Flags{})
	r.ExitCode = p.ExitCode
	r.Hints = p.Hints
}

const pendingDir = "Updates_Pending"

// hints are what the operator can do about what r shows, whatever the
// host decides first.
func hints(r *report.Report) []string {
	out := []string{}
	switch {
	case r.PendingProblems():
		out = append(out, "a pending update zip cannot be installed (its problems are listed above), and an install takes every pending zip or none: fix or remove it, or run `host run --ignore-updates` to serve without the updates")
	case len(r.PendingUpdates) > 0:
		out = append(out, "code updates are pending: run `host run --install-updates` to install them, or `host run --ignore-updates` to serve without them")
	}
	mismatch := r.Has(tablestate.VersionMismatch)
	if mismatch {
		out = append(out, "a table's recorded version does not match its live schema: run `host db repair` to record the version it really has")
	}
	if r.Conflict() && !mismatch {
		out = append(out, "a table is newer than its code or has drifted from every registered schema: no upgrade runs past it; see the details above")
	}
	if r.NeedsUpgrade() {
		out = append(out, "database updates are needed: run `host run --update-db` (it backs up first), or `host run --admin-only` to serve only the admin pages")
	}
	return out
}

func contains(done []Action, a Action) bool {
	for _, d := range done {
		if d == a {
			return true
		}
	}
	return false
}

func files(list []report.PendingUpdate) string {
	var names []string
	for _, u := range list {
		names = append(names, u.File)
	}
	return strings.Join(names, ", ")
}

func invalid(list []report.PendingUpdate) []string {
	var out []string
	for _, u := range list {
		if len(u.Problems) > 0 {
			out = append(out, u.File+": "+strings.Join(u.Problems, "; "))
		}
	}
	return out
}

func coreWhy(r *report.Report) string {
	for _, pk := range r.Packs {
		if pk.ID == "core" && pk.Error != "" {
			return pk.Error
		}
	}
	return "no core pack is installed"
}
