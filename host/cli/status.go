package cli

import (
	"github.com/packhost/packhost/host/system"
)

// statusCmd reports packs, versions, table states and pending updates. It
// opens the database read-only, creates nothing and exits with the code
// `host run` would.
func statusCmd(e env, args []string) (int, error) {
	var c common
	fs := newFlags(e, "status")
	c.register(fs)
	asJSON := fs.Bool("json", false, "print the report as JSON")
	if err := parse(fs, args); err != nil {
		return 0, err
	}
	if fs.NArg() > 0 {
		return 0, usageErr("host status takes no arguments, got %q", fs.Args())
	}
	sys, err := system.Open(e.ctx, c.options(e, true))
	if err != nil {
		return 1, err
	}
	defer sys.Close()
	r, err := sys.Report(e.ctx)
	if err != nil {
		return 1, err
	}
	if *asJSON {
		err = r.WriteJSON(e.stdout)
	} else {
		err = r.WriteText(e.stdout)
	}
	return r.ExitCode, err
}
