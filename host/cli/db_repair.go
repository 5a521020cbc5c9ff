package cli

import (
	"fmt"
	"text/tabwriter"

	"github.com/packhost/packhost/host/locks"
	"github.com/packhost/packhost/host/report"
	"github.com/packhost/packhost/internal/tablestate"
)

// dbRepairCmd records, for each table in version_mismatch, the version its
// live schema really matches, and shows the versions before and after.
// Tables in drift are refused with the reason: no registered version
// matches them, so there is nothing true to record.
func dbRepairCmd(e env, args []string) (int, error) {
	var c common
	fs := newFlags(e, "db repair")
	c.register(fs)
	only := fs.String("pack", "", "repair only this pack's tables")
	if err := parse(fs, args); err != nil {
		return 0, err
	}
	if fs.NArg() > 0 {
		return 0, usageErr("host db repair takes no arguments, got %q", fs.Args())
	}
	sys, err := open(e, c, "host db repair", locks.Write)
	if err != nil {
		return 1, err
	}
	defer sys.Close()
	if *only != "" && sys.Pack(*only) == nil {
		return 1, fmt.Errorf("db repair: pack %s is not installed or did not start", *only)
	}

	tw := tabwriter.NewWriter(e.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "PACK\tTABLE\tSTATE\tBEFORE\tAFTER\tRESULT")
	code := 0
	for _, p := range sys.Packs {
		if *only != "" && p.ID != *only {
			continue
		}
		res, err := p.Repair(e.ctx)
		if err != nil {
			tw.Flush()
			return 1, fmt.Errorf("db repair %s: %w", p.ID, err)
		}
		for _, t := range res {
			state := tablestate.Name(t.StateBefore)
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%s\n", p.ID, t.Name, state, t.Before, t.After, t.Detail)
			if state == tablestate.Drift {
				code = report.ExitSchemaConflict
			}
		}
	}
	if err := tw.Flush(); err != nil {
		return 1, err
	}
	if code != 0 {
		fmt.Fprintln(e.stdout, "\nTables in drift were left as they are: compare the diff in `host status` and fix the table by hand, or restore a backup with `host db restore`.")
	}
	return code, nil
}
