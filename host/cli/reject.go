package cli

import (
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/packhost/packhost/host/locks"
	"github.com/packhost/packhost/host/system"
	"github.com/packhost/packhost/host/updatezip"
)

// updatesRejectCmd moves pending zips aside to Updates_Rejected with the
// reason (their problems, or the operator's words), so that a site whose
// start is stopped by a zip it cannot install can serve. Nothing is
// deleted.
func updatesRejectCmd(e env, args []string) (int, error) {
	var c common
	fs := newFlags(e, "updates reject")
	c.register(fs)
	invalid := fs.Bool("invalid", false, "reject every pending zip that cannot be installed")
	because := fs.String("reason", "", "why (recorded beside the zip); the zip's problems when empty")
	if err := parse(fs, args); err != nil {
		return 0, err
	}
	if fs.NArg() == 0 && !*invalid {
		return 0, usageErr("host updates reject needs zip names in %s, or --invalid", system.PendingDir)
	}
	root, err := filepath.Abs(c.root)
	if err != nil {
		return 1, err
	}
	lock, err := locks.Acquire(e.ctx, root, locks.Write, "host updates reject", locks.Options{Wait: c.lockWait})
	if err != nil {
		return 1, err
	}
	defer lock.Release()
	zips, err := updatezip.Inspect(root, updatezip.Options{HostVersion: HostVersion})
	if err != nil {
		return 1, err
	}
	byName := map[string]*updatezip.Zip{}
	for _, z := range zips {
		byName[z.File] = z
	}
	names := fs.Args()
	if *invalid {
		for _, z := range zips {
			if !z.OK() {
				names = append(names, z.File)
			}
		}
		if len(names) == 0 {
			fmt.Fprintln(e.stdout, "Every pending zip can be installed: nothing was rejected.")
			return 0, nil
		}
	}
	for _, name := range names {
		name = filepath.Base(name)
		z := byName[name]
		if z == nil {
			return 1, fmt.Errorf("updates reject: %s is not a zip in %s", name, system.PendingDir)
		}
		reason := *because
		if reason == "" && !z.OK() {
			reason = strings.Join(z.Problems, "; ")
		}
		if reason == "" {
			reason = "rejected by the operator"
		}
		dst, err := updatezip.Reject(root, name, reason, time.Now())
		if err != nil {
			return 1, fmt.Errorf("updates reject: %w", err)
		}
		fmt.Fprintf(e.stdout, "rejected %s: moved to %s (%s)\n", name, dst, reason)
	}
	return 0, nil
}
