package recovery

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/packhost/packhost/host/packs"
	"github.com/packhost/packhost/internal/proc"
)

// ErrInterrupted is wrapped by Recover's error when an interrupted install
// could be neither finished nor undone; the system directory keeps its
// journal and the host must not start until an admin has looked.
var ErrInterrupted = errors.New("an interrupted install could not be recovered")

// ErrOwnerRunning is returned by Recover when the process that wrote the
// journal still runs: its install is under way, not interrupted, and
// nothing was touched.
var ErrOwnerRunning = errors.New("the install is under way")

// Recovery says what Recover did with an interrupted install.
type Recovery struct {
	// Action is "finished" (the install had committed, or the database
	// upgrade had begun without a backup and the new versions stay),
	// "undone" (the old versions are back, the zips still pending), or ""
	// when there was nothing to recover.
	Action string
	// Packs are "id old -> new" for each pack of the install.
	Packs []string
	// NeedsDBRestore is set when the tables must be restored from the
	// database backup before the host starts: call FinishRecovery with
	// the (old) packs running.
	NeedsDBRestore bool
	// Warning is something the admin should know.
	Warning string
	// Swept are the temporary files a stopped host left that were removed
	// (see Sweep), relative to the system directory.
	Swept []string
}

// String is one sentence for the log.
func (r *Recovery) String() string {
	if r == nil || r.Action == "" && len(r.Swept) == 0 && r.Warning == "" {
		return "no interrupted install"
	}
	s := "no interrupted install"
	if r.Action != "" {
		s = fmt.Sprintf("an interrupted install was %s (%s)", r.Action, strings.Join(r.Packs, ", "))
	}
	if len(r.Swept) > 0 {
		s += "; removed what a stopped host left being written: " + strings.Join(r.Swept, ", ")
	}
	if r.NeedsDBRestore {
		s += "; the database is restored next"
	}
	if r.Warning != "" {
		s += "; " + r.Warning
	}
	return s
}

// Recover finishes or undoes an install the host did not complete (it
// died: SIGKILL, power loss). The caller holds the system's write lock
// (host/locks), and Recover acts only when the journal's owner is gone.
// It runs before anything else at start and touches only files; when the
// tables must be restored too it says so, and the caller starts the packs
// and calls FinishRecovery.
//
// After the journal, Sweep removes the temporary files a stopped host
// left (Swept says which); a failure to remove them is a Warning, not an
// error.
//
// An install that had committed is finished. One whose database upgrade
// had begun without a backup of a pack it replaced is finished too (the
// new versions passed their start check; the upgrade steps are
// transactional and `host run --update-db` completes them). Anything else
// is undone: the tables of replaced packs are restored from the backup,
// those of packs the install added are dropped.
func Recover(root string) (*Recovery, error) {
	r, err := recoverJournal(root)
	if err != nil {
		return r, err
	}
	swept, err := Sweep(root, time.Now())
	r.Swept = swept
	if err != nil {
		if r.Warning != "" {
			r.Warning += "; "
		}
		r.Warning += err.Error()
	}
	return r, nil
}

func recoverJournal(root string) (*Recovery, error) {
	j, err := Read(root)
	if err != nil || j == nil {
		return &Recovery{}, err
	}
	r := &Recovery{}
	for _, e := range j.Packs {
		r.Packs = append(r.Packs, fmt.Sprintf("%s %s -> %s", e.ID, OrNew(e.OldVersion), e.Version))
	}
	if !j.Owner.Gone() && !proc.IsSelf(j.Owner.Identity) {
		return r, fmt.Errorf("%w: %s wrote the install journal %s and is still running; nothing was touched", ErrOwnerRunning, j.Owner, Path(root))
	}
	fail := func(err error) (*Recovery, error) {
		return r, j.failed(root, err)
	}
	switch {
	case j.State == StateRestoreDB:
		r.Action, r.NeedsDBRestore = "undone", true
		return r, nil
	case j.State == StateCommitted,
		j.State == StateUpgrading && !j.DBUndoable():
		if j.State == StateUpgrading {
			r.Warning = "the database upgrade had begun without a backup and may be unfinished: run `host run --update-db`"
		}
		if _, err := Commit(root, j); err != nil {
			return fail(err)
		}
		r.Action = "finished"
		return r, nil
	}
	packsDir := filepath.Join(root, packs.Dir)
	for _, e := range j.Packs {
		if err := UndoFiles(packsDir, e); err != nil {
			return fail(fmt.Errorf("put back pack %s: %w", e.ID, err))
		}
	}
	r.Action = "undone"
	if j.State == StateUpgrading {
		if err := j.SetState(root, StateRestoreDB); err != nil {
			return fail(err)
		}
		r.NeedsDBRestore = true
		return r, nil
	}
	if err := Remove(root); err != nil {
		return fail(err)
	}
	return r, nil
}

// FinishRecovery restores the tables after Recover undid an install whose
// database upgrade had begun: from the database backup for the packs it
// backed up (each table from the backup's own schema and rows, whatever
// code is installed now), by dropping them for the tables it created.
// running are the packs started from the old files Recover put back. A
// failure is recorded in the journal, which stays: `host status` shows it
// and `host recover` offers the ways out.
func FinishRecovery(ctx context.Context, root string, running []*packs.Pack, db DBUndo) error {
	j, err := Read(root)
	if err != nil || j == nil {
		return err
	}
	if j.State != StateRestoreDB {
		return fmt.Errorf("%w: the journal is in state %q; run Recover first", ErrInterrupted, j.State)
	}
	if db == nil {
		return errors.New("finish recovery: no database steps to restore with")
	}
	if err := undoDB(ctx, db, running, j, hclog.NewNullLogger()); err != nil {
		return j.failed(root, err)
	}
	return Remove(root)
}

// undoDB restores the backed-up packs and drops the tables the install
// created.
func undoDB(ctx context.Context, db DBUndo, running []*packs.Pack, j *Journal, log hclog.Logger) error {
	if ids := j.RestoreIDs(); len(ids) > 0 {
		if err := db.Restore(ctx, running, j.DBBackup, ids); err != nil {
			return fmt.Errorf("restore the database from %s: %w", j.DBBackup, err)
		}
		log.Info("database restored", "backup", j.DBBackup)
	}
	return DropNew(ctx, db, j, log)
}

// UndoDB is the installer's database rollback: the same as recovery's.
func UndoDB(ctx context.Context, db DBUndo, running []*packs.Pack, j *Journal, log hclog.Logger) error {
	return undoDB(ctx, db, running, j, log)
}

// failed records why recovery could not finish in the journal (for
// `host status`) and returns the error to show.
func (j *Journal) failed(root string, cause error) error {
	j.LastError = cause.Error()
	if err := j.Write(root); err != nil {
		cause = errors.Join(cause, err)
	}
	return fmt.Errorf("%w (journal %s): %v; `host status` shows what is on disk and `host recover` offers the ways out", ErrInterrupted, Path(root), cause)
}

// DBUndo puts the database back as it was before an install: the
// installer's database steps (host/install.PackDB) implement it.
type DBUndo interface {
	// Restore puts back what the install's database backup (token) saved
	// of the packs ids, through the running packs.
	Restore(ctx context.Context, running []*packs.Pack, token string, ids []string) error
	// DropNew drops the tables the install created for pack id and puts
	// its meta rows back as rec recorded them.
	DropNew(ctx context.Context, id string, rec *NewPackDB) error
}

// DropNew drops the tables the install created: those of the packs it
// added, those the new versions of replaced packs added, and those of
// dependencies it upgraded for the first time.
func DropNew(ctx context.Context, db DBUndo, j *Journal, log hclog.Logger) error {
	var errs []error
	for _, e := range j.Created() {
		if err := db.DropNew(ctx, e.ID, e.New); err != nil {
			errs = append(errs, err)
			continue
		}
		log.Info("tables the install added were dropped", "pack", e.ID, "tables", strings.Join(e.New.Created, ", "))
	}
	return errors.Join(errs...)
}
