package web

import (
	"fmt"
	"strings"
	"time"

	"github.com/packhost/packhost/host/report"
	"github.com/packhost/packhost/host/system"
	"github.com/packhost/packhost/internal/tablestate"
)

// Decision is one thing the host decided at its start, and why.
type Decision struct {
	Time     time.Time `json:"time"`
	Topic    string    `json:"topic"`
	Decision string    `json:"decision"`
	Why      string    `json:"why"`
}

// StartFlags are the run flags that steer the decisions at start.
type StartFlags struct {
	Addr           string
	InstallUpdates bool
	IgnoreUpdates  bool
	UpdateDB       bool
	NoBackup       bool
	AdminOnly      bool
	// Reason is why only the admin pages are served, when they are.
	Reason string
}

// StartDecisions writes down what `host run` decided before serving, from
// the report it decided on (rep, as it stood when serving began), the
// system and the flags. The order is the order of the decisions: code
// updates, packs, database, serving.
func StartDecisions(sys *system.System, rep *report.Report, f StartFlags) []Decision {
	now := time.Now().UTC()
	var out []Decision
	add := func(topic, decision, why string) {
		out = append(out, Decision{Time: now, Topic: topic, Decision: decision, Why: why})
	}
	pending, _ := sys.PendingUpdates()
	switch {
	case len(pending) > 0 && f.IgnoreUpdates:
		add("code updates", fmt.Sprintf("serve without installing the %d pending update zip(s): %s", len(pending), files(pending)),
			"--ignore-updates was given")
	case len(pending) > 0 && f.InstallUpdates:
		add("code updates", "install the pending update zips before serving", "--install-updates was given")
	case f.InstallUpdates:
		add("code updates", "nothing to install", "--install-updates was given and Updates_Pending holds no zip")
	default:
		add("code updates", "nothing to install", "Updates_Pending holds no zip")
	}
	if len(sys.Failed) > 0 {
		var msgs []string
		for _, err := range sys.Failed {
			msgs = append(msgs, err.Error())
		}
		add("packs", fmt.Sprintf("serve with %d of %d installed packs", len(sys.Packs), len(sys.Installed)),
			"these did not start: "+strings.Join(msgs, "; "))
	} else {
		var ids []string
		for _, p := range sys.Packs {
			ids = append(ids, p.ID+" "+p.Info.Version)
		}
		add("packs", fmt.Sprintf("serve with every installed pack (%d)", len(sys.Packs)), "all started: "+strings.Join(ids, ", "))
	}
	var needing []string
	if rep != nil {
		for _, p := range rep.Packs {
			for _, t := range p.Tables {
				if tablestate.NeedsUpgrade(t.State) {
					needing = append(needing, fmt.Sprintf("%s.%s (%s, %d -> %d)", p.ID, t.Name, t.State, t.InstalledVersion, t.CodeVersion))
				}
			}
		}
	}
	switch {
	case len(needing) == 0:
		add("database", "no upgrade", "every table is at its code version")
	case f.UpdateDB:
		backup := "with a backup first"
		if f.NoBackup {
			backup = "without a backup (--no-backup)"
		}
		add("database", "upgrade "+strings.Join(needing, ", ")+" "+backup+", then serve", "--update-db was given")
	case f.AdminOnly:
		add("database", "leave "+strings.Join(needing, ", ")+" as they are and serve only the admin pages",
			"--admin-only was given; the pages of packs would run on tables their code does not expect")
	}
	if f.AdminOnly {
		why := "--admin-only was given"
		if f.Reason != "" {
			why += ": " + f.Reason
		}
		add("serving", "serve only /admin on "+f.Addr+"; every other page answers 503 with the maintenance page", why)
	} else {
		add("serving", "serve the packs' pages and /admin on "+f.Addr, "nothing above stopped the start")
	}
	return out
}

func files(list []report.PendingUpdate) string {
	var names []string
	for _, u := range list {
		names = append(names, u.File)
	}
	return strings.Join(names, ", ")
}
