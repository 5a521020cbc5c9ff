// Package install installs the update zips waiting in Updates_Pending: it
// backs up, stages, swaps, relaunches and upgrades as named steps, with a
// journal (host/recovery) that lets an interrupted install be finished or
// undone.
package install

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/packhost/packhost/host/packs"
	"github.com/packhost/packhost/host/preflight"
	"github.com/packhost/packhost/host/recovery"
	"github.com/packhost/packhost/host/sysbackup"
	"github.com/packhost/packhost/host/system"
	"github.com/packhost/packhost/host/updatezip"
	"github.com/packhost/packhost/internal/backupfile"
	"github.com/packhost/packhost/internal/crashpoint"
	"github.com/packhost/packhost/internal/naming"
)

// DBSteps backs up, upgrades and restores the tables of packs for an
// install. running are the packs to talk to: the old versions for Backup
// and Restore, the new ones for Upgrade.
type DBSteps interface {
	// Backup backs up the tables and settings of the packs ids and
	// returns a token Restore takes.
	Backup(ctx context.Context, running []*packs.Pack, ids []string) (token string, err error)
	// Upgrade upgrades the tables of the packs ids, in dependency order.
	Upgrade(ctx context.Context, running []*packs.Pack, ids []string) error
	// Restore puts back what Backup saved of the packs ids (the backup
	// made with token; other backups of the same second are left alone).
	Restore(ctx context.Context, running []*packs.Pack, token string, ids []string) error
	// RecordNew reads what the database holds of the pack id and of the
	// tables its new version declares, before they are upgraded. replaced
	// says that an older version of the pack was installed.
	RecordNew(ctx context.Context, id string, tables []string, replaced bool) (*recovery.NewPackDB, error)
	// DropNew puts the database back as RecordNew found it: it drops the
	// tables the install created and puts the pack's meta rows back.
	DropNew(ctx context.Context, id string, rec *recovery.NewPackDB) error
}

// Installer installs the zips waiting in Updates_Pending.
//
// Install's lifecycle:
//  1. Inspect every pending zip; if any is invalid, stop: nothing changed.
//  2. Back up the system directory to Updates_Backups/system-<ts>.zip and
//     the tables of the packs being replaced (both skipped with NoBackup).
//  3. Write the journal, then extract each zip beside its pack
//     (packs/.<id>.new-<ts>), checking every sha256 again.
//  4. Swap each pack by renames: packs/<id> -> packs/.<id>.old-<ts>, then
//     the staged directory -> packs/<id>.
//  5. Start every installed pack from the new files; each must Describe
//     itself with its manifest's id and version.
//  6. Upgrade the tables of the installed packs.
//  7. Commit: move each zip to Updates_Installed/<name>-<ts>.zip, remove
//     the old versions and the journal.
//
// A failure in 3-6 puts the old directories back, restores the tables
// from the backup of step 2 when the upgrade had begun, and leaves the
// zips in Updates_Pending. A crash anywhere is handled by Recover at the
// next start, which reads the journal.
type Installer struct {
	Root string
	// Inspect is how zips are checked (host version, limits).
	Inspect updatezip.Options
	// Packs says how to start packs (database, timeouts, logger).
	Packs packs.Config
	DB    DBSteps
	// NoBackup skips the system and database backups.
	NoBackup bool
	Log      hclog.Logger
	// Progress, when set, receives the system backup's progress.
	Progress func(done, total int64)
	// Now is the clock; time.Now when nil.
	Now func() time.Time
}

// RollbackTimeout bounds putting things back after a failed install. The
// rollback does not stop when the install's context is cancelled (that
// may be what failed it); a database restore of large tables takes time.
const RollbackTimeout = time.Hour

// Result says what an install did.
type Result struct {
	// Zips are the installed zips, in install order.
	Zips []*updatezip.Zip
	// SystemBackup is the system backup's path, "" with NoBackup.
	SystemBackup string
	// DBBackup is the database backup's token, "" when none was taken.
	DBBackup string
	// Moved are the zips' new paths in Updates_Installed.
	Moved []string
}

// InstallError is an install that failed and was rolled back. Zips holds
// every zip's problems when validation failed.
type InstallError struct {
	Step string
	Err  error
	Zips []*updatezip.Zip
	// RollbackErr is set when putting things back failed too.
	RollbackErr error
}

func (e *InstallError) Error() string {
	msg := fmt.Sprintf("install updates: %s: %v", e.Step, e.Err)
	if e.Step != "validate" {
		msg += "; the old versions were put back and the zips left in " + system.PendingDir
	}
	if e.RollbackErr != nil {
		msg += fmt.Sprintf("; putting things back failed too: %v", e.RollbackErr)
	}
	return msg
}

func (e *InstallError) Unwrap() error { return e.Err }

func (in *Installer) log() hclog.Logger {
	if in.Log == nil {
		return hclog.NewNullLogger()
	}
	return in.Log
}

// Install installs every pending zip or none. running are the packs now
// running (the old versions), used to back up their tables; the caller
// stops them and opens the system again after Install returns.
func (in *Installer) Install(ctx context.Context, running []*packs.Pack) (*Result, error) {
	log := in.log()
	now := time.Now
	if in.Now != nil {
		now = in.Now
	}
	zips, err := updatezip.Inspect(in.Root, in.Inspect)
	if err != nil {
		return nil, err
	}
	if err := preflight.Check(ctx, preflight.Env{Root: in.Root, Packs: in.Packs, Platform: in.Inspect.Platform}, zips); err != nil {
		return nil, err
	}
	if len(zips) == 0 {
		return nil, updatezip.ErrNothingPending
	}
	var bad []string
	for _, z := range zips {
		if !z.OK() {
			bad = append(bad, z.Err().Error())
		}
	}
	if len(bad) > 0 {
		return nil, &InstallError{Step: "validate", Zips: zips,
			Err: fmt.Errorf("%w: nothing was installed:\n  %s", updatezip.ErrInvalidZip, strings.Join(bad, "\n  "))}
	}
	stamp := naming.Stamp(now())
	res := &Result{Zips: zips}
	j := &recovery.Journal{Stamp: stamp}
	var replaced []string
	for _, z := range zips {
		m := z.Manifest
		j.Packs = append(j.Packs, recovery.JournalEntry{
			ID: m.ID, Version: m.Version, OldVersion: z.Installed, Zip: z.File,
			Stage: "." + m.ID + ".new-" + stamp, Old: "." + m.ID + ".old-" + stamp,
		})
		if z.Installed != "" {
			replaced = append(replaced, m.ID)
		}
		log.Info("installing", "zip", z.File, "pack", m.ID, "from", recovery.OrNew(z.Installed), "to", m.Version, "signature", z.Signature)
	}

	if !in.NoBackup && in.DB != nil {
		// Before any backup is written: a replaced pack that is not
		// running cannot back up its tables.
		for _, id := range replaced {
			if findPack(running, id) == nil {
				return nil, &InstallError{Step: "database backup", Err: notRunning(id)}
			}
		}
	}
	if !in.NoBackup {
		log.Info("backing up the system directory")
		res.SystemBackup, err = sysbackup.BackupSystem(ctx, in.Root, now(), in.Progress)
		if err != nil {
			return nil, &InstallError{Step: "system backup", Err: err}
		}
		j.SystemBackup = res.SystemBackup
		log.Info("system backup written", "path", res.SystemBackup)
		crashpoint.At("after-system-backup")
		if len(replaced) > 0 && in.DB != nil {
			res.DBBackup, err = in.DB.Backup(ctx, running, replaced)
			if err != nil {
				return nil, &InstallError{Step: "database backup", Err: err}
			}
			j.DBBackup = res.DBBackup
			log.Info("database backup written", "token", res.DBBackup)
		}
		crashpoint.At("after-db-backup")
	}

	j.State = recovery.StateStaging
	if err := j.Write(in.Root); err != nil {
		return nil, &InstallError{Step: "journal", Err: err}
	}
	crashpoint.At("after-journal")

	fail := func(step string, err error) (*Result, error) {
		log.Error("install failed; putting the old versions back", "step", step, "error", err)
		// The failure may be the context itself (Ctrl-C, SIGTERM): the
		// rollback must still run to its end, so it gets a context that
		// is not cancelled with ctx, bounded by a generous timeout.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), RollbackTimeout)
		defer cancel()
		rerr := in.rollback(rctx, j)
		return nil, &InstallError{Step: step, Err: err, RollbackErr: rerr}
	}
	packsDir := filepath.Join(in.Root, packs.Dir)
	for i, z := range zips {
		if err := updatezip.Extract(z, filepath.Join(packsDir, j.Packs[i].Stage), in.Inspect.WithDefaults().Limits); err != nil {
			return fail("stage "+z.File, err)
		}
		crashpoint.At("mid-stage")
	}
	if err := backupfile.SyncDir(packsDir); err != nil {
		return fail("stage", err)
	}
	crashpoint.At("after-stage")

	if err := j.SetState(in.Root, recovery.StateSwapping); err != nil {
		return fail("journal", err)
	}
	for _, e := range j.Packs {
		if err := swapIn(packsDir, e); err != nil {
			return fail("swap "+e.ID, err)
		}
	}
	crashpoint.At("after-swap")
	if err := j.SetState(in.Root, recovery.StateSwapped); err != nil {
		return fail("journal", err)
	}

	l, err := packs.NewLauncher(in.Packs)
	if err != nil {
		return fail("start packs", err)
	}
	defer l.Close()
	newPacks, err := startInstalled(ctx, l, in.Root, j.IDs(), log)
	if err != nil {
		l.Close()
		return fail("start the new versions", err)
	}
	for _, e := range j.Packs {
		if findPack(newPacks, e.ID) == nil {
			l.Close()
			return fail("start the new versions", fmt.Errorf("pack %s did not start", e.ID))
		}
	}
	crashpoint.At("after-relaunch")
	if in.DB != nil {
		// Record which of the tables each new version declares do not
		// exist yet, so that a rollback can drop them: a pack the install
		// adds has no backup to go back to, and the backup of a replaced
		// pack is restored by its old version, which knows nothing of the
		// tables the new one adds (it would leave them, their registry
		// rows and no version key: drift). Written with the state below,
		// before any upgrade.
		for i, e := range j.Packs {
			p := findPack(newPacks, e.ID)
			var tables []string
			for _, t := range p.Info.GetTables() {
				tables = append(tables, t.GetName())
			}
			rec, err := in.DB.RecordNew(ctx, e.ID, tables, e.OldVersion != "")
			if err != nil {
				l.Close()
				return fail("record the database", err)
			}
			if rec.Replaced && len(rec.Created) == 0 {
				continue // the backup puts back everything
			}
			j.Packs[i].New = rec
		}
	}
	if err := j.SetState(in.Root, recovery.StateUpgrading); err != nil {
		l.Close()
		return fail("journal", err)
	}
	if in.DB != nil {
		if err := in.DB.Upgrade(ctx, newPacks, j.IDs()); err != nil {
			l.Close()
			return fail("upgrade the database", err)
		}
	}
	crashpoint.At("after-upgrade")
	l.Close()

	if err := j.SetState(in.Root, recovery.StateCommitted); err != nil {
		return fail("journal", err)
	}
	crashpoint.At("after-commit")
	res.Moved, err = recovery.Commit(in.Root, j)
	if err != nil {
		// Installed; only the tidying failed. Recover finishes it.
		return res, fmt.Errorf("install updates: installed, but tidying up failed (the next start finishes it): %w", err)
	}
	for _, z := range zips {
		log.Info("installed", "pack", z.Manifest.ID, "version", z.Manifest.Version)
	}
	return res, nil
}

// findPack returns the pack id of list, nil when it is not there.
func findPack(list []*packs.Pack, id string) *packs.Pack {
	for _, p := range list {
		if p.ID == id {
			return p
		}
	}
	return nil
}

// startInstalled starts every installed pack. The packs ids and the packs
// they depend on must start: their start errors are returned together.
// Another pack that does not start is logged and left out; it is not part
// of the install, and the host reports it as it did before.
func startInstalled(ctx context.Context, l *packs.Launcher, root string, ids []string, log hclog.Logger) ([]*packs.Pack, error) {
	list, err := packs.Discover(root)
	if err != nil {
		return nil, err
	}
	required := withDependencies(list, ids)
	started, failed := l.StartAll(ctx, list)
	var errs []error
	for _, err := range failed {
		var se *packs.StartError
		if errors.As(err, &se) && !required[se.ID] {
			log.Warn("a pack the install does not need did not start; it is left as it was", "pack", se.ID, "error", err)
			continue
		}
		errs = append(errs, err)
	}
	return started, errors.Join(errs...)
}

// withDependencies is the set of ids and of the packs they depend on,
// directly or not, by the installed manifests of list.
func withDependencies(list []packs.Installed, ids []string) map[string]bool {
	byID := map[string]*packs.Installed{}
	for i := range list {
		byID[list[i].ID] = &list[i]
	}
	out := map[string]bool{}
	var add func(id string)
	add = func(id string) {
		if out[id] {
			return
		}
		out[id] = true
		if p := byID[id]; p != nil && p.Manifest != nil {
			for _, d := range p.Manifest.DependsOn {
				add(d)
			}
		}
	}
	for _, id := range ids {
		add(id)
	}
	return out
}

// swapIn moves the old directory aside and the staged one in. Each rename
// is atomic; the journal and the directory names say how far it got.
func swapIn(packsDir string, e recovery.JournalEntry) error {
	final := filepath.Join(packsDir, e.ID)
	if _, err := os.Stat(final); err == nil {
		if err := os.Rename(final, filepath.Join(packsDir, e.Old)); err != nil {
			return err
		}
		if err := backupfile.SyncDir(packsDir); err != nil {
			return err
		}
		crashpoint.At("mid-swap")
	}
	if err := os.Rename(filepath.Join(packsDir, e.Stage), final); err != nil {
		return err
	}
	return backupfile.SyncDir(packsDir)
}

// rollback undoes a failed install: files first, then the tables when the
// upgrade had begun. The journal goes when everything is back.
func (in *Installer) rollback(ctx context.Context, j *recovery.Journal) error {
	packsDir := filepath.Join(in.Root, packs.Dir)
	var errs []error
	for _, e := range j.Packs {
		if err := recovery.UndoFiles(packsDir, e); err != nil {
			errs = append(errs, fmt.Errorf("put back pack %s: %w", e.ID, err))
		}
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	if j.State == recovery.StateUpgrading {
		if err := in.restoreDB(ctx, j); err != nil {
			return err
		}
	}
	return recovery.Remove(in.Root)
}

// restoreDB puts the tables back as they were before the install, with
// the old binaries back in place: the replaced packs' tables from the
// database backup, and the new packs' tables dropped.
func (in *Installer) restoreDB(ctx context.Context, j *recovery.Journal) error {
	if in.DB == nil {
		return nil
	}
	if !j.DBUndoable() {
		in.log().Warn("the database upgrade had begun and no database backup was taken (--no-backup): tables may be partly upgraded; `host status` shows their state")
	}
	if err := j.SetState(in.Root, recovery.StateRestoreDB); err != nil {
		return err
	}
	if j.DBBackup != "" {
		l, err := packs.NewLauncher(in.Packs)
		if err != nil {
			return err
		}
		defer l.Close()
		old, err := startInstalled(ctx, l, in.Root, j.ReplacedIDs(), in.log())
		if err != nil {
			return fmt.Errorf("start the old versions to restore the database: %w", err)
		}
		if err := in.DB.Restore(ctx, old, j.DBBackup, j.ReplacedIDs()); err != nil {
			return fmt.Errorf("restore the database from %s: %w", j.DBBackup, err)
		}
		in.log().Info("database restored", "backup", j.DBBackup)
	}
	return recovery.DropNew(ctx, in.DB, j, in.log())
}
