package packrt

import (
	"context"
	"errors"
	"fmt"
	"os"
	"testing"

	"github.com/hashicorp/go-hclog"
	"gorm.io/gorm"

	"github.com/packhost/packhost/internal/dbconn"
	"github.com/packhost/packhost/internal/dbtest"
	"github.com/packhost/packhost/internal/meta"
)

// benchSpec is a pack with tables tables of steps steps each: a CREATE,
// then columns added one per step, with an index every fifth step.
func benchSpec(tables, steps int) Spec {
	p := Spec{ID: "bench", Version: "1.0.0"}
	for i := 0; i < tables; i++ {
		name := fmt.Sprintf("bench_t%02d", i)
		t := Table{Name: name, Steps: []Step{sqlStep("creates "+name, fmt.Sprintf(`CREATE TABLE %s (id integer PRIMARY KEY, c0 text NOT NULL DEFAULT '')`, name))}}
		for s := 1; s < steps; s++ {
			stmts := []string{fmt.Sprintf(`ALTER TABLE %s ADD COLUMN c%d integer NOT NULL DEFAULT 0`, name, s)}
			if s%5 == 0 {
				stmts = append(stmts, fmt.Sprintf(`CREATE INDEX idx_%s_c%d ON %s (c%d)`, name, s, name, s))
			}
			t.Steps = append(t.Steps, sqlStep(fmt.Sprintf("adds %s.c%d", name, s), stmts...))
		}
		p.Tables = append(p.Tables, t)
	}
	return p
}

// runStepsOnly is the reference: the same steps on the same kind of
// scratch database (each in its own transaction), without reading any
// schema: what a fresh install of the pack costs.
func runStepsOnly(ctx context.Context, p Spec, db *gorm.DB) error {
	for _, t := range p.Tables {
		for _, s := range t.Steps {
			if err := db.WithContext(ctx).Transaction(func(tx *gorm.DB) error { return s.Up(ctx, tx) }); err != nil {
				return err
			}
		}
	}
	return nil
}

// BenchmarkHistory times computing the schema of every version of a pack
// of 10 tables with 20 steps each (bench/history.sh), against running the
// same steps without reading the schemas, on SQLite and PostgreSQL; and
// CheckSchema of the upgraded pack, which does not compute the history
// for tables that are as registered.
func BenchmarkHistory(b *testing.B) {
	ctx := context.Background()
	p := benchSpec(10, 20)
	b.Run("sqlite/history", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			if _, err := ComputeHistory(ctx, p, dbconn.SQLite, nil); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("sqlite/steps_only", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			db, err := openScratchSQLite()
			if err != nil {
				b.Fatal(err)
			}
			if err := runStepsOnly(ctx, p, db); err != nil {
				b.Fatal(err)
			}
			dbconn.Close(db)
		}
	})
	b.Run("sqlite/check_schema", func(b *testing.B) { benchCheck(b, p, dbtest.SQLite(b)) })
	dsn := os.Getenv(dbtest.EnvPGDSN)
	if dsn == "" {
		b.Logf("%s not set: no PostgreSQL figures", dbtest.EnvPGDSN)
		return
	}
	db := dbtest.PostgresAt(b, dsn)
	b.Run("postgres/history", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			if _, err := ComputeHistory(ctx, p, dbconn.Postgres, db.Gorm); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("postgres/steps_only", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			err := db.Gorm.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
				name, err := scratchName()
				if err != nil {
					return err
				}
				if err := tx.Exec("CREATE SCHEMA " + name).Error; err != nil {
					return err
				}
				if err := tx.Exec("SET LOCAL search_path TO " + name).Error; err != nil {
					return err
				}
				if err := runStepsOnly(ctx, p, tx); err != nil {
					return err
				}
				return errRollback
			})
			if !errors.Is(err, errRollback) {
				b.Fatal(err)
			}
		}
	})
	b.Run("postgres/check_schema", func(b *testing.B) { benchCheck(b, p, dbtest.PostgresAt(b, dsn)) })
}

// benchCheck upgrades p on db, then times CheckSchema of every table.
func benchCheck(b *testing.B, p Spec, db dbtest.DB) {
	ctx := context.Background()
	if err := meta.Ensure(ctx, db.Gorm); err != nil {
		b.Fatal(err)
	}
	rt := newRuntime(p, hclog.NewNullLogger(), db.Target, true)
	defer rt.close()
	if err := rt.upgrade(ctx, nil, noProgress); err != nil {
		b.Fatal(err)
	}
	rt.hist = nil // a fresh process: nothing cached
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := rt.check(ctx, nil); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	if rt.hist != nil {
		b.Fatal("CheckSchema of tables as registered computed the history")
	}
}
