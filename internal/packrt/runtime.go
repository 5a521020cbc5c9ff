package packrt

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"sort"
	"strconv"
	"strings"
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

	// hist caches the pack's history by dialect (history.go).
	histMu sync.Mutex
	hist   map[string]History
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

// checkTable reports one table's state (see check); it never verifies
// a table at the code's version beyond its registered schema.
func (r *runtime) checkTable(ctx context.Context, db *gorm.DB, t Table) (*packpb.TableStatus, error) {
	c, err := r.inspectTable(ctx, db, t, false)
	if err != nil {
		return nil, err
	}
	return c.st, nil
}

// tableCheck is what inspectTable found: the status, and what a repair
// would record.
type tableCheck struct {
	st     *packpb.TableStatus
	live   string
	exists bool
	// register says the live schema is the recorded version's (by the
	// code's steps) but schema_registry holds no row for it.
	register bool
}

// inspectTable finds a table's true version. The live schema is compared
// with the schema of the recorded version (as registered on this database,
// and as the pack's steps make it), then with every other version's:
//
//   - it is the recorded version's: ok, or outdated below the code's;
//   - it is another version's: version_mismatch naming the lowest such
//     version (`host db repair` records it and registers its schema);
//   - it is the registered schema of the recorded version, but the pack's
//     steps make that version differently: drift (a released step was
//     changed, removed or reordered), with the diff;
//   - it is no version's: drift, with a diff against the nearest version.
//
// The common case stays cheap: a table at the code's version whose live
// schema is the registered one is ok without replaying any step. verify
// replays them anyway (cached per process), so that a changed history is
// found on such a table too; the upgrade verifies before it runs anything.
func (r *runtime) inspectTable(ctx context.Context, db *gorm.DB, t Table, verify bool) (*tableCheck, error) {
	code := t.Version()
	st := &packpb.TableStatus{Name: t.Name, CodeVersion: int32(code)}
	c := &tableCheck{st: st}
	installed, err := meta.InstalledVersion(ctx, db, r.pack.ID, t.Name)
	if err != nil {
		return nil, err
	}
	st.InstalledVersion = int32(installed)
	live, exists, err := schema.Describe(ctx, db, t.Name)
	if err != nil {
		return nil, fmt.Errorf("check %s: %w", t.Name, err)
	}
	st.LiveSchema, c.live, c.exists = live, live, exists
	switch {
	case installed > code:
		st.State = packpb.TableState_TABLE_STATE_NEWER
		st.Detail = fmt.Sprintf("installed version %d is newer than this code's version %d (pack %s %s): the database belongs to a newer release; install it again or restore a matching backup",
			installed, code, r.pack.ID, r.pack.Version)
		return c, nil
	case installed == 0 && !exists:
		st.State = packpb.TableState_TABLE_STATE_MISSING
		return c, nil
	}
	regs, err := meta.Registered(ctx, db, r.pack.ID, t.Name)
	if err != nil {
		return nil, err
	}
	reg, hasReg := regs[installed]
	if exists && hasReg && reg.SchemaText == live && installed == code && !verify {
		st.State = packpb.TableState_TABLE_STATE_OK
		return c, nil
	}
	vs := knownVersions{regs: regs}
	if h, err := r.history(ctx, db); err != nil {
		vs.codeErr = err
		r.log.Warn("the pack's steps could not be replayed to check a table's history", "table", t.Name, "error", err)
	} else {
		vs.code = h[t.Name]
	}

	if installed == 0 {
		r.judgeUnrecorded(c, t, vs)
	} else {
		r.judgeRecorded(c, t, vs, installed)
	}
	return c, nil
}

// judgeUnrecorded judges a table this pack declares that exists while no
// version is recorded for it: ours only if it is exactly one of our
// versions.
func (r *runtime) judgeUnrecorded(c *tableCheck, t Table, vs knownVersions) {
	st, live := c.st, c.live
	if m := vs.matches(live); len(m) > 0 {
		mismatch(st, m, fmt.Sprintf("no version is recorded for table %s in pack_settings, but its live schema is that of version %d; run `host db repair` to record it",
			t.Name, m[0]))
		return
	}
	st.State = packpb.TableState_TABLE_STATE_DRIFT
	st.Detail = fmt.Sprintf("a table named %s exists but no version is recorded for it by pack %s, and its schema is no version of the pack's table: it may be another pack's (see the packs above) or left from an earlier install; nothing is created over it: restore the backup it came from, or ask its owner",
		t.Name, r.pack.ID)
	vs.diffNearest(st, live, 0)
}

// judgeRecorded judges a table at a recorded version against that
// version's schema (registered and made by the steps), then every other's.
func (r *runtime) judgeRecorded(c *tableCheck, t Table, vs knownVersions, installed int) {
	st, live, code := c.st, c.live, t.Version()
	reg, hasReg := vs.regs[installed]
	want, hasWant := vs.code.At(installed)
	switch {
	case !c.exists:
		st.State = packpb.TableState_TABLE_STATE_DRIFT
		st.Detail = fmt.Sprintf("version %d is recorded but the table does not exist", installed)
		if hasReg {
			want, hasWant = reg.SchemaText, true
		}
		if hasWant {
			st.Diff, st.DriftColumns = schema.Diff(want, "")
			st.DiffVersion = int32(installed)
		}
		return
	case hasReg && reg.SchemaText == live && hasWant && want != live:
		st.State = packpb.TableState_TABLE_STATE_DRIFT
		st.Detail = fmt.Sprintf("the table is version %d as registered on this database, but pack %s %s's steps make a different version %d: a released step was changed, removed or reordered; install the release that matches this database, or restore a backup",
			installed, r.pack.ID, r.pack.Version, installed)
		st.Diff, st.DriftColumns = schema.Diff(want, live)
		st.DiffVersion = int32(installed)
		return
	case hasWant && want == live && hasReg && reg.SchemaText != live:
		mismatch(st, []int{installed}, fmt.Sprintf("the live table is version %d as pack %s's steps make it, but schema_registry holds another schema for version %d (written by another build of the pack); run `host db repair` to record the live one",
			installed, r.pack.ID, installed))
		return
	case (hasWant && want == live) || (!hasWant && hasReg && reg.SchemaText == live):
		st.State = packpb.TableState_TABLE_STATE_OK
		if installed < code {
			st.State = packpb.TableState_TABLE_STATE_OUTDATED
		}
		switch {
		case !hasReg:
			c.register = true
			st.Detail = fmt.Sprintf("schema_registry holds no schema for version %d on this database; the live table is version %d as the pack's steps make it: `host db repair` records it", installed, installed)
		case !hasWant && vs.codeErr != nil:
			st.Detail = fmt.Sprintf("the table matches its registered version %d, but the pack's steps could not be replayed to check that the code still makes it so: %v", installed, vs.codeErr)
		}
		return
	case !hasWant && !hasReg:
		if m := vs.matches(live); len(m) > 0 {
			mismatch(st, m, fmt.Sprintf("recorded version is %d but the live schema is that of registered version %d; run `host db repair`", installed, m[0]))
			return
		}
		// Nothing to compare with: the state the table says it is in.
		st.State = packpb.TableState_TABLE_STATE_OK
		if installed < code {
			st.State = packpb.TableState_TABLE_STATE_OUTDATED
		}
		st.Detail = fmt.Sprintf("no schema is registered for version %d and the pack's steps could not be replayed (%v); the live schema was not verified", installed, vs.codeErr)
		return
	}
	if m := vs.matches(live); len(m) > 0 {
		mismatch(st, m, fmt.Sprintf("recorded version is %d but the live schema is that of version %d; run `host db repair`", installed, m[0]))
		return
	}
	st.State = packpb.TableState_TABLE_STATE_DRIFT
	vs.diffNearest(st, live, installed)
	st.Detail = fmt.Sprintf("the live schema matches no registered version nor any version of pack %s's steps; it differs from version %d (recorded: %d)", r.pack.ID, st.DiffVersion, installed)
}

// mismatch sets st to version_mismatch at the lowest of the matching
// versions m.
func mismatch(st *packpb.TableStatus, m []int, detail string) {
	st.State = packpb.TableState_TABLE_STATE_VERSION_MISMATCH
	st.MatchedVersion = int32(m[0])
	st.Detail = detail
	if len(m) > 1 {
		st.Detail += fmt.Sprintf(" (versions %s have the same schema: repair records %d, the lowest, so the steps after it run again at the next upgrade)", joinInts(m), m[0])
	}
}

func joinInts(v []int) string {
	s := make([]string, len(v))
	for i, x := range v {
		s[i] = strconv.Itoa(x)
	}
	if len(s) == 2 {
		return s[0] + " and " + s[1]
	}
	return strings.Join(s[:len(s)-1], ", ") + " and " + s[len(s)-1]
}

// knownVersions are the schema texts a table may have: each version's as
// the pack's steps make it (nil when they could not be replayed: codeErr),
// and as registered on this database.
type knownVersions struct {
	code    *TableHistory
	codeErr error
	regs    map[int]meta.Registration
}

// texts lists every (version, text), the code's first.
func (k knownVersions) texts() (versions []int, texts []string) {
	if k.code != nil {
		for i, s := range k.code.Schemas {
			versions, texts = append(versions, i+1), append(texts, s)
		}
	}
	for v, reg := range k.regs {
		versions, texts = append(versions, v), append(texts, reg.SchemaText)
	}
	return versions, texts
}

// matches returns the versions whose text is live, lowest first.
func (k knownVersions) matches(live string) []int {
	seen := map[int]bool{}
	var out []int
	vs, ts := k.texts()
	for i, v := range vs {
		if ts[i] == live && !seen[v] {
			seen[v] = true
			out = append(out, v)
		}
	}
	sort.Ints(out)
	return out
}

// diffNearest sets st's diff against the version whose text differs least
// from live (prefer on a tie).
func (k knownVersions) diffNearest(st *packpb.TableStatus, live string, prefer int) {
	best, bestText, bestSize := 0, "", -1
	vs, ts := k.texts()
	for i, v := range vs {
		d, _ := schema.Diff(ts[i], live)
		size := 0
		for _, l := range strings.Split(d, "\n") {
			if strings.HasPrefix(l, "- ") || strings.HasPrefix(l, "+ ") {
				size++
			}
		}
		if bestSize < 0 || size < bestSize || (size == bestSize && (v == prefer || (best != prefer && v > best))) {
			best, bestText, bestSize = v, ts[i], size
		}
	}
	if bestSize < 0 {
		return
	}
	st.Diff, st.DriftColumns = schema.Diff(bestText, live)
	st.DiffVersion = int32(best)
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
	// Every table is verified against the pack's own history before
	// anything runs: a table at the code's version that this code would
	// make differently (a changed history) stops the upgrade too.
	for _, t := range tables {
		c, err := r.inspectTable(ctx, db, t, true)
		if err != nil {
			return err
		}
		st := c.st
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

// repair records, for each table in version_mismatch, the version its
// live schema matches, and registers that schema; for a table at its
// recorded version whose schema is not registered on this database, it
// registers it. Tables in drift are refused.
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
		c, err := r.inspectTable(ctx, db, t, false)
		if err != nil {
			return nil, err
		}
		st := c.st
		rt := &packpb.RepairedTable{Name: t.Name, Before: st.InstalledVersion, After: st.InstalledVersion, StateBefore: st.State}
		record := func(v int32) error {
			return db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
				if err := meta.SetVersion(ctx, tx, r.pack.ID, t.Name, int(v)); err != nil {
					return err
				}
				return meta.Register(ctx, tx, r.pack.ID, t.Name, int(v), c.live)
			})
		}
		switch {
		case st.State == packpb.TableState_TABLE_STATE_VERSION_MISMATCH:
			if err := record(st.MatchedVersion); err != nil {
				return nil, err
			}
			rt.After = st.MatchedVersion
			rt.Detail = fmt.Sprintf("recorded version %d, which the live schema matches, and registered its schema", st.MatchedVersion)
		case c.register:
			if err := record(st.InstalledVersion); err != nil {
				return nil, err
			}
			rt.Detail = fmt.Sprintf("registered the schema of version %d, which the live table has", st.InstalledVersion)
		case st.State == packpb.TableState_TABLE_STATE_DRIFT:
			rt.Detail = "not repaired: " + st.Detail
		default:
			rt.Detail = "nothing to repair"
		}
		out = append(out, rt)
	}
	return out, nil
}
