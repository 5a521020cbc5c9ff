package sdktest

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"testing"

	"gorm.io/gorm"

	"github.com/packhost/packhost/host/updatezip"
	"github.com/packhost/packhost/internal/schema"
	"github.com/packhost/packhost/plugins/sdk"
)

// DefaultRows is how many rows the kit writes into each table before each
// upgrade it makes, unless GeneratedRows says otherwise.
const DefaultRows = 20

// Option changes what CheckUpgradePaths does.
type Option func(*options)

type options struct {
	releases []string
	rows     int
	fill     FillFunc
}

// FillFunc writes an author's own rows into table, which is at version,
// before the kit upgrades it: data the generated rows cannot stand for
// (foreign keys, checks, values a step parses).
type FillFunc func(t testing.TB, db *gorm.DB, table string, version int)

// Releases names the pack's earlier releases: their update zips or
// pack.json files, or folders of them (the folder `host pack build --out`
// writes to). The kit then upgrades along the paths sites took: from each
// release to this code, and through every release in turn. It also checks
// that this code makes the same schema at every version a release
// recorded (a changed history). Releases of other packs and of this
// version or later are ignored.
func Releases(paths ...string) Option {
	return func(o *options) { o.releases = append(o.releases, paths...) }
}

// Fill adds the author's rows to every table before each upgrade, after
// the generated ones.
func Fill(fn FillFunc) Option { return func(o *options) { o.fill = fn } }

// GeneratedRows sets how many rows the kit generates in each table (from
// the table's column types) before each upgrade; 0 generates none.
func GeneratedRows(n int) Option { return func(o *options) { o.rows = n } }

// CheckUpgradePaths proves that upgrading tables that hold rows gives the
// same schema as a fresh install, on SQLite and on PostgreSQL:
//
//  1. A fresh install of pack (with Create where a table has one) is the
//     reference.
//  2. For each path, the pack is installed as it was at the path's start,
//     each table gets rows (generated per column type, then Fill's), and
//     it is upgraded stage by stage to the current pack. A step that
//     cannot run on a table with rows fails here, with the error.
//  3. Each table must end ok, with the fresh install's schema.
//
// With Releases the paths are the released ones: from each earlier
// release, and through all of them in turn; each release's recorded
// schemas must also be what the current steps make. Without it, every
// table is cut at every version (1, 2, ...): combinations that may never
// have been released. A pack with Create is also installed step by step
// from nothing.
func CheckUpgradePaths(t *testing.T, pack sdk.Pack, opts ...Option) {
	t.Helper()
	o := options{rows: DefaultRows}
	for _, f := range opts {
		f(&o)
	}
	releases, err := loadReleases(pack, o.releases)
	if err != nil {
		t.Fatalf("sdktest: %v", err)
	}
	if len(o.releases) > 0 && len(releases) == 0 {
		t.Logf("sdktest: no earlier release of %s in %s: checking every version cut instead", pack.ID, strings.Join(o.releases, ", "))
	}
	ForEachDatabase(t, func(t *testing.T, db Database) {
		t.Helper()
		for _, p := range pathProblems(t, pack, db, o, releases) {
			t.Error(p)
		}
	})
}

func loadReleases(pack sdk.Pack, paths []string) ([]updatezip.Release, error) {
	if len(paths) == 0 {
		return nil, nil
	}
	all, err := updatezip.LoadReleases(paths...)
	if err != nil {
		return nil, err
	}
	return updatezip.Earlier(all, pack.ID, pack.Version), nil
}

// path is one way a site reaches the current pack: the tables' versions
// at each stage, then the current pack.
type path struct {
	name   string
	stages []map[string]int
}

// paths lists the paths CheckUpgradePaths takes for pack.
func paths(pack sdk.Pack, releases []updatezip.Release) []path {
	var out []path
	if hasCreate(pack) {
		all := map[string]int{}
		for _, t := range pack.Tables {
			all[t.Name] = len(t.Steps)
		}
		out = append(out, path{name: "from nothing, every step instead of Create", stages: []map[string]int{all}})
	}
	var shipped []updatezip.Release
	for _, r := range releases {
		if r.Manifest.Version != pack.Version {
			shipped = append(shipped, r)
		}
	}
	if len(shipped) > 0 {
		var chain path
		for _, r := range shipped {
			out = append(out, path{name: "from release " + r.Manifest.Version, stages: []map[string]int{r.Manifest.Tables()}})
			chain.stages = append(chain.stages, r.Manifest.Tables())
			chain.name += ", " + r.Manifest.Version
		}
		if len(shipped) > 1 {
			chain.name = "through releases " + strings.TrimPrefix(chain.name, ", ")
			out = append(out, chain)
		}
		return out
	}
	maxV := 0
	for _, t := range pack.Tables {
		maxV = max(maxV, len(t.Steps))
	}
	for v := 1; v < maxV; v++ {
		cut := map[string]int{}
		for _, t := range pack.Tables {
			cut[t.Name] = min(v, len(t.Steps))
		}
		out = append(out, path{name: fmt.Sprintf("from version %d", v), stages: []map[string]int{cut}})
	}
	return out
}

func hasCreate(p sdk.Pack) bool {
	for _, t := range p.Tables {
		if t.Create != nil {
			return true
		}
	}
	return false
}

// pathProblems returns one message per path and table that does not end at
// the fresh install's schema, per step that fails on the way, and per
// released version whose schema the steps no longer make.
func pathProblems(t testing.TB, pack sdk.Pack, fresh Database, o options, releases []updatezip.Release) []string {
	t.Helper()
	ctx := context.Background()
	c := Start(t, pack, fresh)
	if err := c.Upgrade(ctx); err != nil {
		return []string{fmt.Sprintf("a fresh install of %s %s failed: %v", pack.ID, pack.Version, err)}
	}
	want, problems := readOK(ctx, c, "after a fresh install")
	if len(problems) > 0 {
		return problems
	}
	problems = append(problems, historyProblems(ctx, c, fresh.Name, releases)...)
	for _, p := range paths(pack, releases) {
		db := freshLike(t, fresh)
		got, err := walk(t, pack, db, p, o)
		if err != nil {
			problems = append(problems, fmt.Sprintf("upgrade %s: %v", p.name, err))
			continue
		}
		for _, name := range sortedKeys(want) {
			if got[name] != want[name] {
				d, _ := schema.Diff(want[name], got[name])
				problems = append(problems, fmt.Sprintf("table %s upgraded %s differs from a fresh install (- fresh install, + upgraded):\n%s", name, p.name, strings.TrimRight(d, "\n")))
			}
		}
	}
	return problems
}

// walk installs the path's first stage on db, fills every table, upgrades
// through the other stages (filling again after each) and then to pack,
// and returns each table's schema.
func walk(t testing.TB, pack sdk.Pack, db Database, p path, o options) (map[string]string, error) {
	t.Helper()
	ctx := context.Background()
	for i, stage := range p.stages {
		at := AtVersions(pack, stage)
		if err := Start(t, at, db).Upgrade(ctx); err != nil {
			if i == 0 {
				return nil, fmt.Errorf("install with its tables at %s: %w", versionsText(stage), err)
			}
			return nil, fmt.Errorf("to tables at %s, with rows in them: %w", versionsText(stage), err)
		}
		for _, tb := range at.Tables {
			if err := writeRows(ctx, db.Gorm, tb.Name, o.rows); err != nil {
				return nil, fmt.Errorf("write %d generated rows into %s at version %d: %w; write the table's rows with sdktest.Fill instead (and sdktest.GeneratedRows(0))",
					o.rows, tb.Name, len(tb.Steps), err)
			}
			if o.fill != nil {
				o.fill(t, db.Gorm, tb.Name, len(tb.Steps))
			}
		}
	}
	c := Start(t, pack, db)
	if err := c.Upgrade(ctx); err != nil {
		return nil, fmt.Errorf("to %s %s, with rows in every table: %w", pack.ID, pack.Version, err)
	}
	got, problems := readOK(ctx, c, "after the upgrade")
	if len(problems) > 0 {
		return nil, fmt.Errorf("%s", strings.Join(problems, "; "))
	}
	return got, nil
}

func versionsText(v map[string]int) string {
	var parts []string
	for _, name := range sortedKeys(v) {
		parts = append(parts, fmt.Sprintf("%s %d", name, v[name]))
	}
	return strings.Join(parts, ", ")
}

// readOK returns each table's schema, and a problem for each table that is
// not ok.
func readOK(ctx context.Context, c *Conn, when string) (map[string]string, []string) {
	states, err := c.Check(ctx)
	if err != nil {
		return nil, []string{fmt.Sprintf("check %s: %v", when, err)}
	}
	out := map[string]string{}
	var problems []string
	for _, s := range states {
		if s.State != "ok" {
			problems = append(problems, fmt.Sprintf("%s, table %s is %s (%s)", when, s.Name, s.State, s.Detail))
		}
		out[s.Name] = s.Schema
	}
	return out, problems
}

// historyProblems compares the schemas the current steps make with those
// each release recorded for dialect.
func historyProblems(ctx context.Context, c *Conn, dialect string, releases []updatezip.Release) []string {
	var problems []string
	now, err := c.Schemas(ctx, dialect)
	if err != nil {
		return []string{fmt.Sprintf("compute the schema of every version: %v", err)}
	}
	for _, r := range releases {
		h := r.Manifest.History
		if !h.Has(dialect) || h.Format != schema.Format {
			continue
		}
		for _, s := range h.Schemas {
			if s.Dialect != dialect {
				continue
			}
			list := now[s.Table]
			if s.Version > len(list) {
				problems = append(problems, fmt.Sprintf("table %s has %d versions, release %s had %d: a released step was removed", s.Table, len(list), r.Manifest.Version, s.Version))
				continue
			}
			if list[s.Version-1] != s.Text {
				d, _ := schema.Diff(s.Text, list[s.Version-1])
				problems = append(problems, fmt.Sprintf("table %s, version %d: the steps make another schema than release %s recorded (- released, + now): a released step was changed, removed or reordered; put it back and make the change a new step:\n%s",
					s.Table, s.Version, r.Manifest.Version, strings.TrimRight(d, "\n")))
			}
		}
	}
	return dedupe(problems)
}

func dedupe(list []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, s := range list {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
