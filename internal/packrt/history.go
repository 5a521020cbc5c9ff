package packrt

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"runtime/debug"

	"github.com/glebarez/sqlite"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/packhost/packhost/internal/dbconn"
	"github.com/packhost/packhost/internal/packerr"
	"github.com/packhost/packhost/internal/packpb"
	"github.com/packhost/packhost/internal/schema"
)

// A table's history is the canonical schema text its steps make at every
// version, on an empty database. The runtime computes it by replaying the
// steps, the way a fresh install runs them (table by table, in declaration
// order, each step in its own transaction), on a scratch database:
//
//   - SQLite: a private in-memory database, with foreign keys off (other
//     packs' tables do not exist there).
//   - PostgreSQL: a schema of a random name created inside a transaction on
//     the pack's database, searched first, then the database's own search
//     path, so references to other packs' tables (core's users) resolve.
//     The transaction is always rolled back: nothing is left behind.
//
// Then Create, when a table has one, runs on a second scratch database (a
// fresh install that uses it); what it makes must equal the last version.
//
// Steps see Replaying(ctx) true, so that what they do outside the
// database (a log line, a message) is skipped.

// History is what the replay found for each table of a pack.
type History map[string]*TableHistory

// TableHistory is one table's history on one dialect.
type TableHistory struct {
	// Schemas[i] is the text at version i+1.
	Schemas []string
	// HasCreate says the table has a Create function; CreateSchema is
	// what it makes on an empty database.
	HasCreate    bool
	CreateSchema string
}

// At returns the text of version v (1-based); ok is false when the table
// has no such version.
func (h *TableHistory) At(v int) (string, bool) {
	if h == nil || v < 1 || v > len(h.Schemas) {
		return "", false
	}
	return h.Schemas[v-1], true
}

type replayKey struct{}

// Replaying reports whether a step runs in a replay on a scratch database
// (see plugins/sdk.Replaying), not on the site's data.
func Replaying(ctx context.Context) bool {
	v, _ := ctx.Value(replayKey{}).(bool)
	return v
}

// errRollback ends the PostgreSQL replay's transaction.
var errRollback = errors.New("scratch replay done")

// ComputeHistory replays the pack's steps on a scratch database of dialect.
// db is needed for PostgreSQL (the database the scratch schema is made
// in) and ignored for SQLite.
func ComputeHistory(ctx context.Context, p Spec, dialect string, db *gorm.DB) (History, error) {
	switch dialect {
	case dbconn.SQLite:
		return sqliteHistory(ctx, p)
	case dbconn.Postgres:
		if db == nil {
			return nil, fmt.Errorf("pack %s: the PostgreSQL schema history needs a PostgreSQL database, and the pack was handed none", p.ID)
		}
		if name := db.Dialector.Name(); name != dbconn.Postgres {
			return nil, fmt.Errorf("pack %s: the PostgreSQL schema history needs a PostgreSQL database, and the pack was handed a %s one", p.ID, name)
		}
		return postgresHistory(ctx, p, db)
	}
	return nil, fmt.Errorf("pack %s: schema history: unknown dialect %q (sqlite or postgres)", p.ID, dialect)
}

func sqliteHistory(ctx context.Context, p Spec) (History, error) {
	h := History{}
	steps, err := openScratchSQLite()
	if err != nil {
		return nil, err
	}
	defer dbconn.Close(steps)
	if err := replaySteps(ctx, p, steps, h, dbconn.SQLite); err != nil {
		return nil, err
	}
	if !hasCreate(p) {
		return h, nil
	}
	create, err := openScratchSQLite()
	if err != nil {
		return nil, err
	}
	defer dbconn.Close(create)
	if err := replayCreate(ctx, p, create, h, dbconn.SQLite); err != nil {
		return nil, err
	}
	return h, nil
}

// openScratchSQLite opens a private in-memory database. One connection,
// never recycled: the database lives as long as it.
func openScratchSQLite() (*gorm.DB, error) {
	db, err := gorm.Open(sqlite.Open("file::memory:?_pragma=foreign_keys(0)"), &gorm.Config{
		Logger: logger.Discard, SkipDefaultTransaction: true,
	})
	if err != nil {
		return nil, fmt.Errorf("open a scratch sqlite database: %w", err)
	}
	sqlDB, err := db.DB()
	if err != nil {
		return nil, err
	}
	sqlDB.SetMaxOpenConns(1)
	sqlDB.SetMaxIdleConns(1)
	sqlDB.SetConnMaxLifetime(0)
	sqlDB.SetConnMaxIdleTime(0)
	return db, nil
}

func postgresHistory(ctx context.Context, p Spec, db *gorm.DB) (History, error) {
	h := History{}
	err := db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		// The host opens the database read-only for `host status`; the
		// scratch schema is written, then rolled back with the rest.
		if err := tx.Exec("SET TRANSACTION READ WRITE").Error; err != nil {
			return fmt.Errorf("start a scratch transaction: %w", err)
		}
		// A step that references another pack's table locks it until the
		// rollback; never wait long behind a busy one.
		if err := tx.Exec("SET LOCAL lock_timeout = '10s'").Error; err != nil {
			return err
		}
		var path string
		if err := tx.Raw("SELECT current_setting('search_path')").Scan(&path).Error; err != nil {
			return fmt.Errorf("read search_path: %w", err)
		}
		use := func() error {
			name, err := scratchName()
			if err != nil {
				return err
			}
			if err := tx.Exec("CREATE SCHEMA " + name).Error; err != nil {
				return fmt.Errorf("create the scratch schema %s: %w", name, err)
			}
			if err := tx.Exec("SELECT set_config('search_path', ?, true)", name+", "+path).Error; err != nil {
				return fmt.Errorf("search the scratch schema %s: %w", name, err)
			}
			return nil
		}
		if err := use(); err != nil {
			return err
		}
		if err := replaySteps(ctx, p, tx, h, dbconn.Postgres); err != nil {
			return err
		}
		if hasCreate(p) {
			if err := use(); err != nil {
				return err
			}
			if err := replayCreate(ctx, p, tx, h, dbconn.Postgres); err != nil {
				return err
			}
		}
		return errRollback
	})
	if !errors.Is(err, errRollback) {
		if err == nil {
			err = errors.New("the scratch transaction was committed") // cannot happen
		}
		return nil, err
	}
	return h, nil
}

// scratchName is a schema name no one else uses.
func scratchName() (string, error) {
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return "packhost_scratch_" + hex.EncodeToString(b), nil
}

func hasCreate(p Spec) bool {
	for _, t := range p.Tables {
		if t.Create != nil {
			return true
		}
	}
	return false
}

// replaySteps runs every step of every table, in order, describing the
// table after each.
func replaySteps(ctx context.Context, p Spec, db *gorm.DB, h History, dialect string) error {
	for _, t := range p.Tables {
		th := &TableHistory{HasCreate: t.Create != nil}
		h[t.Name] = th
		for i, s := range t.Steps {
			text, err := replayOne(ctx, p, db, t, i+1, s.Up, dialect, fmt.Sprintf("step %d -> %d", i, i+1))
			if err != nil {
				return err
			}
			th.Schemas = append(th.Schemas, text)
		}
	}
	return nil
}

// replayCreate installs every table as a fresh install does (Create where
// there is one, the steps otherwise) and records what Create made.
func replayCreate(ctx context.Context, p Spec, db *gorm.DB, h History, dialect string) error {
	for _, t := range p.Tables {
		if t.Create == nil {
			for i, s := range t.Steps {
				if _, err := replayOne(ctx, p, db, t, i+1, s.Up, dialect, fmt.Sprintf("step %d -> %d", i, i+1)); err != nil {
					return err
				}
			}
			continue
		}
		text, err := replayOne(ctx, p, db, t, t.Version(), t.Create, dialect, "Create")
		if err != nil {
			return err
		}
		h[t.Name].CreateSchema = text
	}
	return nil
}

// replayOne runs one step in its own transaction (a savepoint on
// PostgreSQL) and returns the table's text after it.
func replayOne(ctx context.Context, p Spec, db *gorm.DB, t Table, to int, up StepFunc, dialect, what string) (string, error) {
	rctx := context.WithValue(ctx, replayKey{}, true)
	fail := func(err error) error {
		if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
			return err
		}
		return &packerr.Error{Code: packpb.ErrorCode_ERROR_CODE_STEP_FAILED, PackID: p.ID, Table: t.Name, StepTo: int32(to),
			Msg: fmt.Sprintf("pack %s: table %s: %s failed on an empty scratch %s database (computing the schema of every version): %v",
				p.ID, t.Name, what, dialect, err)}
	}
	err := db.WithContext(rctx).Transaction(func(tx *gorm.DB) (err error) {
		defer func() {
			if r := recover(); r != nil {
				err = fmt.Errorf("panic: %v\n%s", r, debug.Stack())
			}
		}()
		return up(rctx, tx)
	})
	if err != nil {
		return "", fail(err)
	}
	text, exists, err := schema.Describe(rctx, db, t.Name)
	if err != nil {
		return "", fail(err)
	}
	if !exists {
		return "", fail(fmt.Errorf("it finished but table %s does not exist", t.Name))
	}
	return text, nil
}

// history returns the pack's history on the dialect of db, computed once
// per process. On PostgreSQL the replay runs on a connection of the
// runtime's own pool, never inside db (which may be a transaction, as in a
// restore). An error is not kept: the next call tries again.
func (r *runtime) history(ctx context.Context, db *gorm.DB) (History, error) {
	return r.historyOf(ctx, db.Dialector.Name())
}

func (r *runtime) historyOf(ctx context.Context, dialect string) (History, error) {
	r.histMu.Lock()
	defer r.histMu.Unlock()
	if h, ok := r.hist[dialect]; ok {
		return h, nil
	}
	var db *gorm.DB
	if dialect == dbconn.Postgres {
		var err error
		if db, err = r.database(); err != nil {
			return nil, fmt.Errorf("pack %s: the PostgreSQL schema history needs a PostgreSQL database: %w", r.pack.ID, err)
		}
	}
	h, err := ComputeHistory(ctx, r.pack, dialect, db)
	if err != nil {
		return nil, err
	}
	if r.hist == nil {
		r.hist = map[string]History{}
	}
	r.hist[dialect] = h
	return h, nil
}

// historyResponse answers the History RPC.
func (r *runtime) historyResponse(ctx context.Context, dialects []string) (*packpb.HistoryResponse, error) {
	if len(dialects) == 0 {
		dialects = []string{dbconn.SQLite}
		if r.hasDB && r.target.Driver != "" {
			dialects = []string{r.target.Driver}
		}
	}
	resp := &packpb.HistoryResponse{Format: schema.Format}
	for _, d := range dialects {
		h, err := r.historyOf(ctx, d)
		if err != nil {
			return nil, err
		}
		for _, t := range r.pack.Tables {
			th := h[t.Name]
			resp.Tables = append(resp.Tables, &packpb.TableHistory{Table: t.Name, Dialect: d, Schemas: th.Schemas,
				HasCreate: th.HasCreate, CreateSchema: th.CreateSchema})
		}
	}
	return resp, nil
}
