package upgrade

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"

	"github.com/packhost/packhost/host/report"
	"github.com/packhost/packhost/host/system"
	"github.com/packhost/packhost/internal/tablestate"
)

// ErrConflict is returned by Run when a table is newer than its code, has
// drifted, or has a version that does not match its schema: no upgrade
// runs past it (exit 5).
var ErrConflict = errors.New("schema conflict")

// RunOptions says how Run goes about an upgrade.
type RunOptions struct {
	// NoBackup skips the backup before upgrading.
	NoBackup bool
	// Backup backs up the given packs' tables and settings (those of the
	// packs to upgrade that have an installed table); an error stops the
	// upgrade before anything is changed. Required unless NoBackup.
	Backup func(ctx context.Context, packIDs []string) error
	// Progress receives upgrade events.
	Progress Progress
	// Only, when set, limits the upgrade to these packs.
	Only map[string]bool
}

// Run upgrades every pack of sys whose tables need it. The caller holds
// the system's write lock and the database's exclusive lock
// (host/locks).
//
//  1. check the tables: another host may have done the work before the
//     locks were taken;
//  2. refuse on a schema conflict (ErrConflict), changing nothing;
//  3. back up the packs about to change, unless NoBackup; a failed backup
//     changes nothing;
//  4. upgrade them in dependency order, core first, each step in its own
//     transaction;
//  5. check the result, which must be ok everywhere.
//
// It returns the report after the upgrade (or the one that stopped it).
func Run(ctx context.Context, sys *system.System, opts RunOptions) (*report.Report, error) {
	r, err := sys.Report(ctx)
	if err != nil {
		return nil, err
	}
	if r.Conflict() {
		return r, fmt.Errorf("%w: no table was upgraded", ErrConflict)
	}
	which := Needed(r)
	for id := range which {
		if opts.Only != nil && !opts.Only[id] {
			delete(which, id)
		}
	}
	if len(which) == 0 {
		return r, nil
	}
	// Packs whose tables are all still uninstalled have nothing to back up.
	var ids []string
	for _, p := range r.Packs {
		if which[p.ID] && slices.ContainsFunc(p.Tables, func(t report.Table) bool { return t.InstalledVersion > 0 }) {
			ids = append(ids, p.ID)
		}
	}
	sort.Strings(ids)
	if !opts.NoBackup && len(ids) > 0 {
		if opts.Backup == nil {
			return r, errors.New("upgrade: no backup function was given; pass --no-backup to upgrade without a backup")
		}
		if err := opts.Backup(ctx, ids); err != nil {
			return r, fmt.Errorf("backup before upgrade failed, nothing was upgraded: %w", err)
		}
	}
	if err := Packs(ctx, sys.Packs, which, opts.Progress, func(ctx context.Context) error { return sys.SetupRoles(ctx, sys.Packs) }); err != nil {
		return r, err
	}
	after, err := sys.Report(ctx)
	if err != nil {
		return nil, err
	}
	for _, p := range after.Packs {
		if !which[p.ID] {
			continue
		}
		for _, t := range p.Tables {
			if t.State != tablestate.OK {
				return after, fmt.Errorf("after the upgrade, %s.%s is %s (%s)", p.ID, t.Name, t.State, t.Detail)
			}
		}
	}
	return after, nil
}
