package packrt

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"sort"
	"sync"

	"github.com/hashicorp/go-hclog"
	"gorm.io/gorm"

	"github.com/packhost/packhost/internal/dbconn"
	"github.com/packhost/packhost/internal/meta"
	"github.com/packhost/packhost/internal/packerr"
	"github.com/packhost/packhost/internal/packpb"
	"github.com/packhost/packhost/internal/schema"
)

// runtime does the pack's database work: checking, upgrading and repairing
// its tables. It opens the database on first use, so Describe works without
// one.
type runtime struct {
	pack   Spec
	log    hclog.Logger
	target dbconn.Target
	hasDB  bool

	mu sync.Mutex
	db *gorm.DB
}

func newRuntime(p Spec, log hclog.Logger, target dbconn.Target, hasDB bool) *runtime {
	return &runtime{pack: p, log: log, target: target, hasDB: hasDB}
}

func (r *runtime) database() (*gorm.DB, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.db != nil {
		return r.db, nil
	}
	if !r.hasDB {
		return nil, packerr.ErrNoDatabase
	}
	db, err := dbconn.Open(r.target)
	if err != nil {
		return nil, fmt.Errorf("pack %s: %w", r.pack.ID, err)
	}
	r.db = db
	return db, nil
}

func (r *runtime) close() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.db != nil {
		_ = dbconn.Close(r.db)
		r.db = nil
	}
}

// tables resolves names to the pack's tables; no names means all of them.
func (r *runtime) tables(names []string) ([]Table, error) {
	if len(names) == 0 {
		return r.pack.Tables, nil
	}
	var out []Table
	for _, n := range names {
		t, ok := r.pack.table(n)
		if !ok {
			return nil, &packerr.Error{Code: packpb.ErrorCode_ERROR_CODE_UNKNOWN_TABLE, PackID: r.pack.ID, Table: n,
				Msg: fmt.Sprintf("pack %s owns no table %q", r.pack.ID, n)}
		}
		out = append(out, t)
	}
	return out, nil
}

// check reports the state of each table. When the host handed no database
// (a status on a database that does not exist yet) every table is missing.
func (r *runtime) check(ctx context.Context, names []string) ([]*packpb.TableStatus, error) {
	tables, err := r.tables(names)
	if err != nil {
		return nil, err
	}
	var db *gorm.DB
	if r.hasDB {
		if db, err = r.database(); err != nil {
			return nil, err
		}
	}
	out := make([]*packpb.TableStatus, 0, len(tables))
	for _, t := range tables {
		if db == nil {
			out = append(out, &packpb.TableStatus{Name: t.Name, CodeVersion: int32(t.Version()),
				State: packpb.TableState_TABLE_STATE_MISSING, Detail: "the database does not exist yet"})
			continue
		}
		st, err := r.checkTable(ctx, db, t)
		if err != nil {
			return nil, err
		}
		out = append(out, st)
	}
	return out, nil
}

func (r *runtime) checkTable(ctx context.Context, db *gorm.DB, t Table) (*packpb.TableStatus, error) {
	code := t.Version()
	st := &packpb.TableStatus{Name: t.Name, CodeVersion: int32(code)}
	installed, err := meta.InstalledVersion(ctx, db, r.pack.ID, t.Name)
	if err != nil {
		return nil, err
	}
	st.InstalledVersion = int32(installed)
	live, exists, err := schema.Describe(ctx, db, t.Name)
	if err != nil {
		return nil, fmt.Errorf("check %s: %w", t.Name, err)
	}
	st.LiveSchema = live
	if installed == 0 {
		st.State = packpb.TableState_TABLE_STATE_MISSING
		if exists {
			// Not ours to create over, and no registered version to
			// compare it with: a conflict, not an install.
			st.State = packpb.TableState_TABLE_STATE_DRIFT
			st.Detail = fmt.Sprintf("a table named %s exists but no version is recorded for it by pack %s: it may be another pack's (see the packs above) or left from an earlier install; nothing is created over it: restore the backup it came from, or ask its owner", t.Name, r.pack.ID)
		}
		return st, nil
	}
	if installed > code {
		st.State = packpb.TableState_TABLE_STATE_NEWER
		st.Detail = fmt.Sprintf("installed version %d is newer than this code's version %d (pack %s %s): the database belongs to a newer release; install it again or restore a matching backup",
			installed, code, r.pack.ID, r.pack.Version)
		return st, nil
	}
	regs, err := meta.Registered(ctx, db, r.pack.ID, t.Name)
	if err != nil {
		return nil, err
	}
	reg, registered := regs[installed]
	switch {
	case !exists:
		st.State = packpb.TableState_TABLE_STATE_DRIFT
		st.Detail = fmt.Sprintf("version %d is recorded but the table does not exist", installed)
		if registered {
			st.Diff, st.DriftColumns = schema.Diff(reg.SchemaText, "")
		}
		return st, nil
	case !registered:
		st.Detail = fmt.Sprintf("no schema is registered for version %d; the live schema was not verified", installed)
	case reg.SchemaText != live:
		if v, ok := matchingVersion(regs, live); ok {
			st.State = packpb.TableState_TABLE_STATE_VERSION_MISMATCH
			st.MatchedVersion = int32(v)
			st.Detail = fmt.Sprintf("recorded version is %d but the live schema is that of version %d; run `host db repair`", installed, v)
			return st, nil
		}
		st.State = packpb.TableState_TABLE_STATE_DRIFT
		st.Diff, st.DriftColumns = schema.Diff(reg.SchemaText, live)
		st.Detail = fmt.Sprintf("live schema differs from registered version %d", installed)
		return st, nil
	}
	if installed < code {
		st.State = packpb.TableState_TABLE_STATE_OUTDATED
	} else {
		st.State = packpb.TableState_TABLE_STATE_OK
	}
	return st, nil
}

// matchingVersion finds the highest registered version whose text is live.
func matchingVersion(regs map[int]meta.Registration, live string) (int, bool) {
	versions := make([]int, 0, len(regs))
	for v := range regs {
		versions = append(versions, v)
	}
	sort.Sort(sort.Reverse(sort.IntSlice(versions)))
	for _, v := range versions {
		if regs[v].SchemaText == live {
			return v, true
		}
	}
	return 0, false
}

// stateError is the error Upgrade returns for a table it must not touch.
func (r *runtime) stateError(st *packpb.TableStatus) error {
	e := &packerr.Error{PackID: r.pack.ID, Table: st.Name}
	switch st.State {
	case packpb.TableState_TABLE_STATE_NEWER:
		e.Code = packpb.ErrorCode_ERROR_CODE_DOWNGRADE
	case packpb.TableState_TABLE_STATE_DRIFT:
		e.Code = packpb.ErrorCode_ERROR_CODE_DRIFT
	case packpb.TableState_TABLE_STATE_VERSION_MISMATCH:
		e.Code = packpb.ErrorCode_ERROR_CODE_VERSION_MISMATCH
	default:
		return nil
	}
	e.Msg = fmt.Sprintf("pack %s: table %s: %s", r.pack.ID, st.Name, st.Detail)
	return e
}

// upgrade brings each table to its code version. Tables in a conflict state
// are refused before anything is run.
func (r *runtime) upgrade(ctx context.Context, names []string, progress func(*packpb.Progress) error) error {
	tables, err := r.tables(names)
	if err != nil {
		return err
	}
	db, err := r.database()
	if err != nil {
		return err
	}
	type plan struct {
		t    Table
		from int
	}
	var plans []plan
	for _, t := range tables {
		st, err := r.checkTable(ctx, db, t)
		if err != nil {
			return err
		}
		if err := r.stateError(st); err != nil {
			return err
		}
		if int(st.InstalledVersion) < t.Version() {
			plans = append(plans, plan{t, int(st.InstalledVersion)})
		}
	}
	for _, p := range plans {
		t := p.t
		code := t.Version()
		if p.from == 0 && t.Create != nil {
			if err := progress(&packpb.Progress{Table: t.Name, From: 0, To: int32(code), Current: 0, Total: 1,
				Message: fmt.Sprintf("installing %s at version %d", t.Name, code)}); err != nil {
				return err
			}
			if err := r.runStep(ctx, db, t, 0, code, t.Create); err != nil {
				return err
			}
			continue
		}
		for v := p.from; v < code; v++ {
			s := t.Steps[v]
			if err := progress(&packpb.Progress{Table: t.Name, From: int32(v), To: int32(v + 1),
				Current: int64(v - p.from), Total: int64(code - p.from), Message: s.Summary}); err != nil {
				return err
			}
			if err := r.runStep(ctx, db, t, v, v+1, s.Up); err != nil {
				return err
			}
		}
	}
	return progress(&packpb.Progress{Done: true, Message: fmt.Sprintf("%d table(s) upgraded", len(plans))})
}

// runStep runs one step in a transaction with its version bump and registry
// row. A panic in the step is caught and rolls back like an error.
func (r *runtime) runStep(ctx context.Context, db *gorm.DB, t Table, from, to int, up func(context.Context, *gorm.DB) error) error {
	r.log.Info("upgrading table", "table", t.Name, "from", from, "to", to)
	err := db.WithContext(ctx).Transaction(func(tx *gorm.DB) (err error) {
		current, err := meta.InstalledVersion(ctx, tx, r.pack.ID, t.Name)
		if err != nil {
			return err
		}
		if current != from {
			return fmt.Errorf("version changed under us (now %d): another host is upgrading this database", current)
		}
		defer func() {
			if p := recover(); p != nil {
				r.log.Error("upgrade step panicked", "table", t.Name, "to", to, "panic", p, "stack", string(debug.Stack()))
				err = fmt.Errorf("panic: %v", p)
			}
		}()
		if err := up(ctx, tx); err != nil {
			return err
		}
		text, exists, err := schema.Describe(ctx, tx, t.Name)
		if err != nil {
			return err
		}
		if !exists {
			return fmt.Errorf("the step finished but table %s does not exist", t.Name)
		}
		if err := meta.SetVersion(ctx, tx, r.pack.ID, t.Name, to); err != nil {
			return err
		}
		return meta.Register(ctx, tx, r.pack.ID, t.Name, to, text)
	})
	if err != nil {
		if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
			return err
		}
		return &packerr.Error{Code: packpb.ErrorCode_ERROR_CODE_STEP_FAILED, PackID: r.pack.ID, Table: t.Name, StepTo: int32(to),
			Msg: fmt.Sprintf("pack %s: table %s: step %d -> %d failed and was rolled back: %v", r.pack.ID, t.Name, from, to, err)}
	}
	return nil
}

// repair records, for each table in version_mismatch, the version its live
// schema matches. Tables in drift are refused.
func (r *runtime) repair(ctx context.Context, names []string) ([]*packpb.RepairedTable, error) {
	tables, err := r.tables(names)
	if err != nil {
		return nil, err
	}
	db, err := r.database()
	if err != nil {
		return nil, err
	}
	var out []*packpb.RepairedTable
	for _, t := range tables {
		st, err := r.checkTable(ctx, db, t)
		if err != nil {
			return nil, err
		}
		rt := &packpb.RepairedTable{Name: t.Name, Before: st.InstalledVersion, After: st.InstalledVersion, StateBefore: st.State}
		switch st.State {
		case packpb.TableState_TABLE_STATE_VERSION_MISMATCH:
			if err := meta.SetVersion(ctx, db, r.pack.ID, t.Name, int(st.MatchedVersion)); err != nil {
				return nil, err
			}
			rt.After = st.MatchedVersion
			rt.Detail = fmt.Sprintf("recorded version %d, which the live schema matches", st.MatchedVersion)
		case packpb.TableState_TABLE_STATE_DRIFT:
			rt.Detail = "not repaired: the live schema matches no registered version; " + st.Detail
		default:
			rt.Detail = "nothing to repair"
		}
		out = append(out, rt)
	}
	return out, nil
}
