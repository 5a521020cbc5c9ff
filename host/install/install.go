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
	"github.com/packhost/packhost/host/upgrade"
	"github.com/packhost/packhost/internal/backupfile"
	"github.com/packhost/packhost/internal/crashpoint"
	"github.com/packhost/packhost/internal/naming"
	"github.com/packhost/packhost/internal/tablestate"
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

// Installer installs the zips waiting in Updates_Pending. The caller holds
// the system's write lock and the database's exclusive lock
// (host/locks): nothing else installs, upgrades or serves meanwhile.
//
// Install's lifecycle, one named step each (see steps):
//  1. validate: inspect the zips (all pending, or Only); if any is
//     invalid, stop: nothing changed.
//  2. back up: the system directory to Updates_Backups/system-<ts>.zip and
//     the tables of the packs being replaced (both skipped with NoBackup).
//  3. journal: write the install journal, owned by this process.
//  4. stage: extract each zip beside its pack (packs/.<id>.new-<ts>-<pid>),
//     checking every sha256 again.
//  5. swap: packs/<id> -> packs/.<id>.old-<ts>-<pid>, then the staged
//     directory -> packs/<id>, by renames.
//  6. relaunch: start the installed packs from the new files; each must
//     Describe itself with its manifest's id and version.
//  7. record: the tables each new version and each dependency needing an
//     upgrade would create (a rollback drops them), and a backup of the
//     dependencies whose tables are upgraded too.
//  8. upgrade: the tables of the installed packs and of the packs they
//     depend on, in dependency order, core first.
//  9. commit: move each zip to Updates_Installed/<name>-<ts>.zip, remove
//     the old versions and the journal.
//
// A failure in 4-8 puts the old directories back, restores the tables
// from the backups when the upgrade had begun, and leaves the zips in
// Updates_Pending. A crash anywhere is handled by recovery at the next
// start, which reads the journal. The packs the install starts are stopped
// on every path.
type Installer struct {
	Root string
	// Inspect is how zips are checked (host version, limits, Only).
	Inspect updatezip.Options
	// Packs says how to start packs (database, timeouts, logger).
	Packs packs.Config
	DB    DBSteps
	// NoBackup skips the system and database backups.
	NoBackup bool
	// Command names the install in its journal ("host run").
	Command string
	Log     hclog.Logger
	// Progress, when set, receives the system backup's progress.
	Progress func(done, total int64)
	// Now is the clock; time.Now when nil.
	Now func() time.Time
}

// RollbackTimeout bounds putting things back after a failed install. The
// rollback does not stop when the install's context is cancelled (that
// may be what failed it); a database restore of large tables takes time.
const RollbackTimeout = time.Hour

// StopTimeout bounds the rollback of an install that was stopped (SIGTERM,
// Ctrl-C): what is not put back by then is left to the next start, which
// finishes it from the journal.
const StopTimeout = 30 * time.Second

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
	// Upgraded are the packs whose tables the install upgraded, in order.
	Upgraded []string
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
	switch {
	case e.RollbackErr != nil:
		msg += fmt.Sprintf("; putting things back failed: %v; the journal was kept: the next start (or `host recover`) finishes it", e.RollbackErr)
	case e.Step != StepValidate && e.Step != stepBackup:
		msg += "; the old versions were put back and the zips left in " + system.PendingDir
	default:
		msg += "; nothing was installed and the zips were left in " + system.PendingDir
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

// Step names, as errors and logs say them. StepValidate is exported: an
// install refused there changed nothing.
const (
	StepValidate = "validate"
	stepBackup   = "back up"
	stepJournal  = "write the journal"
	stepStage    = "stage"
	stepSwap     = "swap"
	stepRelaunch = "start the new versions"
	stepRecord   = "record the database"
	stepUpgrade  = "upgrade the database"
	stepCommit   = "commit"
)

// install is one run of Install: what the steps share.
type install struct {
	in       *Installer
	log      hclog.Logger
	now      func() time.Time
	running  []*packs.Pack // the old versions, for backups
	zips     []*updatezip.Zip
	j        *recovery.Journal
	res      *Result
	launcher *packs.Launcher // the new versions
	newPacks []*packs.Pack
	// pending is the journal being made; j is set once it is written.
	pending *recovery.Journal
}

// Install installs the pending zips (Inspect.Only, or all of them) or
// none. running are the packs now running (the old versions), used to back
// up their tables; the caller stops them and opens the system again after
// Install returns.
func (in *Installer) Install(ctx context.Context, running []*packs.Pack) (*Result, error) {
	now := time.Now
	if in.Now != nil {
		now = in.Now
	}
	x := &install{in: in, log: in.log(), now: now, running: running}
	defer x.close()
	steps := []struct {
		name string
		run  func(context.Context) error
	}{
		{StepValidate, x.validate},
		{stepBackup, x.backup},
		{stepJournal, x.writeJournal},
		{stepStage, x.stage},
		{stepSwap, x.swap},
		{stepRelaunch, x.relaunch},
		{stepRecord, x.record},
		{stepUpgrade, x.upgrade},
		{stepCommit, x.commit},
	}
	for _, st := range steps {
		if err := st.run(ctx); err != nil {
			return x.fail(ctx, st.name, err)
		}
	}
	for _, z := range x.zips {
		x.log.Info("installed", "pack", z.Manifest.ID, "version", z.Manifest.Version)
	}
	return x.res, nil
}

// close stops the packs the install started.
func (x *install) close() {
	if x.launcher != nil {
		x.launcher.Close()
		x.launcher = nil
	}
}

// fail ends a failed install: before the journal nothing was changed;
// after it, everything is put back. A commit that failed halfway is
// installed; only its tidying is left, to the next start.
func (x *install) fail(ctx context.Context, step string, err error) (*Result, error) {
	if x.j == nil {
		var ie *InstallError
		if errors.As(err, &ie) {
			return nil, ie
		}
		return nil, &InstallError{Step: step, Err: err, Zips: x.zips}
	}
	if step == stepCommit && x.j.State == recovery.StateCommitted {
		return x.res, fmt.Errorf("install updates: installed, but tidying up failed (the next start finishes it): %w", err)
	}
	x.log.Error("install failed; putting the old versions back", "step", step, "error", err)
	x.close()
	// The failure may be the context itself (Ctrl-C, SIGTERM): the
	// rollback still runs, on a context of its own, bounded: shortly when
	// the install was stopped, generously when a step failed.
	limit := RollbackTimeout
	if ctx.Err() != nil {
		limit = StopTimeout
	}
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), limit)
	defer cancel()
	rerr := x.in.rollback(rctx, x.j)
	return nil, &InstallError{Step: step, Err: err, RollbackErr: rerr}
}

func (x *install) validate(ctx context.Context) error {
	zips, err := updatezip.Inspect(x.in.Root, x.in.Inspect)
	if err != nil {
		return err
	}
	if err := preflight.Check(ctx, preflight.Env{Root: x.in.Root, Packs: x.in.Packs, Platform: x.in.Inspect.Platform}, zips); err != nil {
		return err
	}
	if len(zips) == 0 {
		return updatezip.ErrNothingPending
	}
	x.zips = zips
	var bad []string
	for _, z := range zips {
		if !z.OK() {
			bad = append(bad, z.Err().Error())
		}
	}
	if len(bad) > 0 {
		return &InstallError{Step: StepValidate, Zips: zips,
			Err: fmt.Errorf("%w: nothing was installed:\n  %s", updatezip.ErrInvalidZip, strings.Join(bad, "\n  "))}
	}
	x.res = &Result{Zips: zips}
	stamp := naming.Stamp(x.now())
	unique := fmt.Sprintf("%s-%d", stamp, os.Getpid())
	j := &recovery.Journal{Stamp: stamp, Owner: recovery.NewOwner(x.command())}
	for _, z := range zips {
		m := z.Manifest
		j.Packs = append(j.Packs, recovery.JournalEntry{
			ID: m.ID, Version: m.Version, OldVersion: z.Installed, Zip: z.File,
			Stage: "." + m.ID + ".new-" + unique, Old: "." + m.ID + ".old-" + unique,
		})
		x.log.Info("installing", "zip", z.File, "pack", m.ID, "from", recovery.OrNew(z.Installed), "to", m.Version, "signature", z.Signature)
	}
	x.pending = j
	return nil
}

func (x *install) command() string {
	if x.in.Command != "" {
		return x.in.Command
	}
	return "host"
}

// replaced are the ids of the packs the install replaces.
func (x *install) replaced() []string {
	var out []string
	for _, e := range x.pending.Packs {
		if e.OldVersion != "" {
			out = append(out, e.ID)
		}
	}
	return out
}

func (x *install) backup(ctx context.Context) error {
	if x.in.NoBackup {
		return nil
	}
	j := x.pending
	replaced := x.replaced()
	if x.in.DB != nil {
		// Before any backup is written: a replaced pack that is not
		// running cannot back up its tables.
		for _, id := range replaced {
			if findPack(x.running, id) == nil {
				return notRunning(id)
			}
		}
	}
	x.log.Info("backing up the system directory")
	var err error
	x.res.SystemBackup, err = sysbackup.BackupSystem(ctx, x.in.Root, x.now(), x.in.Progress)
	if err != nil {
		return err
	}
	j.SystemBackup = x.res.SystemBackup
	x.log.Info("system backup written", "path", x.res.SystemBackup)
	crashpoint.At("after-system-backup")
	if len(replaced) > 0 && x.in.DB != nil {
		token, err := x.in.DB.Backup(ctx, x.running, replaced)
		if err != nil {
			return err
		}
		x.addBackup(token, replaced)
		x.log.Info("database backup written", "token", token)
	}
	crashpoint.At("after-db-backup")
	return nil
}

// addBackup adds a database backup's token and packs to the journal.
func (x *install) addBackup(token string, ids []string) {
	j := x.pending
	if j.DBBackup != "" {
		j.DBBackup += ","
	}
	j.DBBackup += token
	j.BackedUp = append(j.BackedUp, ids...)
	x.res.DBBackup = j.DBBackup
}

func (x *install) writeJournal(ctx context.Context) error {
	x.pending.State = recovery.StateStaging
	if err := x.pending.Write(x.in.Root); err != nil {
		return err
	}
	x.j = x.pending
	crashpoint.At("after-journal")
	return nil
}

func (x *install) stage(ctx context.Context) error {
	packsDir := filepath.Join(x.in.Root, packs.Dir)
	for i, z := range x.zips {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := updatezip.Extract(z, filepath.Join(packsDir, x.j.Packs[i].Stage), x.in.Inspect.WithDefaults().Limits); err != nil {
			return fmt.Errorf("%s: %w", z.File, err)
		}
		crashpoint.At("mid-stage")
	}
	if err := backupfile.SyncDir(packsDir); err != nil {
		return err
	}
	crashpoint.At("after-stage")
	return nil
}

func (x *install) swap(ctx context.Context) error {
	if err := x.j.SetState(x.in.Root, recovery.StateSwapping); err != nil {
		return err
	}
	packsDir := filepath.Join(x.in.Root, packs.Dir)
	for _, e := range x.j.Packs {
		if err := swapIn(packsDir, e); err != nil {
			return fmt.Errorf("pack %s: %w", e.ID, err)
		}
	}
	crashpoint.At("after-swap")
	return x.j.SetState(x.in.Root, recovery.StateSwapped)
}

func (x *install) relaunch(ctx context.Context) error {
	l, err := packs.NewLauncher(x.in.Packs)
	if err != nil {
		return err
	}
	x.launcher = l
	x.newPacks, err = startInstalled(ctx, l, x.in.Root, x.j.IDs(), x.log)
	if err != nil {
		return err
	}
	for _, e := range x.j.Packs {
		if findPack(x.newPacks, e.ID) == nil {
			return fmt.Errorf("pack %s did not start", e.ID)
		}
	}
	if d, ok := x.in.DB.(PackDB); ok && d.Roles != nil {
		if err := d.Roles(ctx, x.newPacks); err != nil {
			return err
		}
	}
	crashpoint.At("after-relaunch")
	return nil
}

// record decides which packs' tables the install upgrades (the installed
// packs and the packs they depend on that need it), backs up the
// dependencies among them whose tables hold data, and records which
// tables do not exist yet, so that a rollback can drop them: a pack the
// install adds has no backup to go back to, and the backup of a replaced
// pack is restored by its old version, which knows nothing of the tables
// the new one adds (it would leave them, their registry rows and no
// version key: drift). Written to the journal before any upgrade.
func (x *install) record(ctx context.Context) error {
	if x.in.DB == nil {
		return nil
	}
	ordered, err := upgrade.Order(x.newPacks)
	if err != nil {
		return err
	}
	list, err := packs.Discover(x.in.Root)
	if err != nil {
		return err
	}
	scope := withDependencies(list, x.j.IDs())
	installed := map[string]int{}
	for i, e := range x.j.Packs {
		installed[e.ID] = i
	}
	var depBackups []string
	for _, p := range ordered {
		if !scope[p.ID] {
			continue
		}
		var tables []string
		for _, t := range p.Info.GetTables() {
			tables = append(tables, t.GetName())
		}
		i, isInstall := installed[p.ID]
		if !isInstall {
			// A dependency: upgraded only when its tables need it.
			states, err := p.CheckSchema(ctx)
			if err != nil {
				return fmt.Errorf("pack %s (a dependency): %w", p.ID, err)
			}
			needs, hasData := false, false
			for _, st := range states {
				name := tablestate.Name(st.GetState())
				needs = needs || tablestate.NeedsUpgrade(name)
				hasData = hasData || (name == tablestate.Outdated)
			}
			if !needs {
				continue
			}
			if hasData && !x.in.NoBackup {
				depBackups = append(depBackups, p.ID)
			}
			rec, err := x.in.DB.RecordNew(ctx, p.ID, tables, hasData && !x.in.NoBackup)
			if err != nil {
				return err
			}
			if len(rec.Created) > 0 || !rec.Replaced {
				x.j.DBOnly = append(x.j.DBOnly, recovery.DBEntry{ID: p.ID, New: rec})
			}
			x.j.Upgrade = append(x.j.Upgrade, p.ID)
			continue
		}
		e := x.j.Packs[i]
		rec, err := x.in.DB.RecordNew(ctx, e.ID, tables, e.OldVersion != "")
		if err != nil {
			return err
		}
		if !rec.Replaced || len(rec.Created) > 0 {
			x.j.Packs[i].New = rec
		}
		x.j.Upgrade = append(x.j.Upgrade, e.ID)
	}
	if len(depBackups) > 0 {
		token, err := x.in.DB.Backup(ctx, x.newPacks, depBackups)
		if err != nil {
			return fmt.Errorf("back up %s, which the install upgrades too: %w", strings.Join(depBackups, ", "), err)
		}
		x.addBackup(token, depBackups)
		x.log.Info("database backup written", "token", token, "packs", strings.Join(depBackups, ", "))
	}
	return x.j.Write(x.in.Root)
}

func (x *install) upgrade(ctx context.Context) error {
	if err := x.j.SetState(x.in.Root, recovery.StateUpgrading); err != nil {
		return err
	}
	if x.in.DB != nil {
		if err := x.in.DB.Upgrade(ctx, x.newPacks, x.j.Upgrade); err != nil {
			return err
		}
		x.res.Upgraded = x.j.Upgrade
	}
	crashpoint.At("after-upgrade")
	return nil
}

func (x *install) commit(ctx context.Context) error {
	x.close()
	if err := x.j.SetState(x.in.Root, recovery.StateCommitted); err != nil {
		return err
	}
	crashpoint.At("after-commit")
	var err error
	x.res.Moved, err = recovery.Commit(x.in.Root, x.j)
	return err
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
// the old binaries back in place: the backed-up packs' tables from the
// database backup (each from the backup's own schema and rows), and the
// tables the install created dropped.
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
	l, err := packs.NewLauncher(in.Packs)
	if err != nil {
		return err
	}
	defer l.Close()
	var old []*packs.Pack
	if ids := j.RestoreIDs(); len(ids) > 0 {
		if old, err = startInstalled(ctx, l, in.Root, ids, in.log()); err != nil {
			return fmt.Errorf("start the old versions to restore the database: %w", err)
		}
	}
	if err := recovery.UndoDB(ctx, in.DB, old, j, in.log()); err != nil {
		return err
	}
	// The old versions' roles declare what they did before the install.
	if d, ok := in.DB.(PackDB); ok && d.Roles != nil && len(old) > 0 {
		return d.Roles(ctx, old)
	}
	return nil
}
