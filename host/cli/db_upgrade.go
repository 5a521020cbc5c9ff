package cli

import (
	"errors"

	"github.com/packhost/packhost/host/locks"
	"github.com/packhost/packhost/host/report"
	"github.com/packhost/packhost/host/upgrade"
)

// dbUpgradeCmd does what `host run --update-db` does before serving (back
// up, upgrade, check) and exits: for deploy scripts and maintenance
// windows.
func dbUpgradeCmd(e env, args []string) (int, error) {
	var c common
	fs := newFlags(e, "db upgrade")
	c.register(fs)
	noBackup := fs.Bool("no-backup", false, "do not back up before upgrading (not recommended)")
	if err := parse(fs, args); err != nil {
		return 0, err
	}
	if fs.NArg() > 0 {
		return 0, usageErr("host db upgrade takes no arguments, got %q", fs.Args())
	}
	sys, err := open(e, c, "host db upgrade", locks.Write)
	if err != nil {
		return 1, err
	}
	defer sys.Close()
	if len(sys.Failed) > 0 {
		for _, err := range sys.Failed {
			sys.Log.Error("pack failed", "error", err)
		}
		return 1, errors.New("db upgrade: some packs did not start; fix or uninstall them first")
	}
	if err := upgradeDB(e, sys, *noBackup); err != nil {
		if errors.Is(err, upgrade.ErrConflict) {
			return report.ExitSchemaConflict, err
		}
		return 1, err
	}
	r, err := sys.Report(e.ctx)
	if err != nil {
		return 1, err
	}
	if err := r.WriteText(e.stdout); err != nil {
		return 1, err
	}
	return r.ExitCode, nil
}
