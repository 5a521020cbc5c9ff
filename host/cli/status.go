package cli

import (
	"path/filepath"
	"time"

	"github.com/packhost/packhost/host/control"
	"github.com/packhost/packhost/host/locks"
	"github.com/packhost/packhost/host/packs"
	"github.com/packhost/packhost/host/report"
	"github.com/packhost/packhost/host/system"
	"github.com/packhost/packhost/internal/dbconn"
)

// statusCmd reports packs, versions, table states and pending updates,
// and exits with the code `host run` would. It never writes: it takes no
// lock, recovers nothing and creates nothing. When a host serves the
// system it asks that host, which checks its running packs afresh;
// otherwise it starts the packs itself, on the database opened read-only.
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
	r, err := statusReport(e, c)
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

func statusReport(e env, c common) (*report.Report, error) {
	log := c.logger(e)
	if root, err := filepath.Abs(c.root); err == nil {
		if h, ok := locks.Serving(root); ok {
			target, _ := dbconn.ParseFlag(c.db, filepath.Join(root, system.DataDir, system.SQLiteFile))
			r, err := control.Status(e.ctx, h.Control, statusWait(c))
			switch {
			case err != nil:
				log.Warn("the serving host did not answer; checking without it", "host", h.String(), "error", err)
			case r.Database != target.String():
				log.Warn("the serving host uses another database than --db; checking without it", "host", h.String(), "its_database", r.Database)
			default:
				return r, nil
			}
		}
	}
	opts := c.options(e, true)
	// Verified binaries start without being hashed again; status reads
	// the cache and never writes it.
	opts.Hashes = packs.LoadHashCache(c.root)
	sys, err := system.Open(e.ctx, opts)
	if err != nil {
		return nil, err
	}
	defer sys.Close()
	return sys.Report(e.ctx)
}

// statusWait bounds the wait for a serving host's report: its packs'
// schema checks, each bounded by --rpc-timeout, and a margin.
func statusWait(c common) time.Duration {
	rpc := c.rpcTimeout
	if rpc <= 0 {
		rpc = packs.DefaultRPCTimeout
	}
	return rpc + 5*time.Second
}
