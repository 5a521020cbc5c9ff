// Package preflight finds what an install would refuse a pending update zip
// for, before anything changes, from what the zip inspection cannot see:
// this database (the tables' recorded versions and schema_registry), the
// other packs' tables, and the zip's own binary asked who it is. `host
// status` shows it while the zip is pending; the installer stops on it
// before its backup. It changes nothing: the database is opened read-only
// and the binary runs from a temporary folder, without a database.
package preflight

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"

	"gorm.io/gorm"

	"github.com/packhost/packhost/host/manifest"
	"github.com/packhost/packhost/host/packs"
	"github.com/packhost/packhost/host/updatezip"
	"github.com/packhost/packhost/internal/dbconn"
	"github.com/packhost/packhost/internal/meta"
	"github.com/packhost/packhost/internal/schema"
)

// Env is what the checks read.
type Env struct {
	Root string
	// Packs says how a zip's binary is started (timeout, logger) and which
	// database the system uses (DB, HasDB); the binary is handed none.
	Packs packs.Config
	// Platform is the binary to start; manifest.Platform() when empty.
	Platform string
}

// Check adds to each inspected zip the problems an install would refuse it
// for, and warnings for what cannot be checked before the install:
//
//  1. tables it declares that another pack declares or owns on this
//     database (pack_settings records them under another pack);
//  2. tables the database holds at a newer version than the zip's code
//     (a downgrade);
//  3. a changed history: the zip's schema at a table's installed version
//     differs from what schema_registry holds for it (or, without a
//     registry row, from the live table), with the diff;
//  4. a binary that is not what its manifest says (id, version, tables).
//
// Zips that already have problems are not started. The error is for a
// database that cannot be read; the zips' own findings are in them.
func Check(ctx context.Context, env Env, zips []*updatezip.Zip) error {
	db, err := openReadOnly(env.Packs)
	if err != nil {
		return err
	}
	if db != nil {
		defer dbconn.Close(db)
	}
	facts, err := readDatabase(ctx, db, zips)
	if err != nil {
		return fmt.Errorf("check the pending updates against the database: %w", err)
	}
	installed, err := packs.Discover(env.Root)
	if err != nil {
		return err
	}
	claims := tableClaims(installed, zips)
	for _, z := range zips {
		if z.Manifest == nil {
			continue
		}
		checkClaims(z, claims, facts)
		checkVersions(z, facts)
		checkHistory(z, facts)
	}
	describeBinaries(ctx, env, zips)
	return nil
}

// openReadOnly opens the system's database to read it; nil when there is
// none yet (an SQLite file that does not exist is not created). An SQLite
// target is taken as the caller opened it: `host status` hands a read-only
// one (immutable, or a copy while a write-ahead log has frames), a command
// that may write the system its own; forcing immutable on a database
// with a live write-ahead log would read it stale.
func openReadOnly(cfg packs.Config) (*gorm.DB, error) {
	if !cfg.HasDB {
		return nil, nil
	}
	t := cfg.DB
	if t.Driver == dbconn.Postgres {
		t.ReadOnly = true
	}
	if t.Driver == dbconn.SQLite {
		if _, err := os.Stat(t.DSN); errors.Is(err, os.ErrNotExist) {
			return nil, nil
		}
	}
	db, err := dbconn.Open(t)
	if err != nil {
		return nil, fmt.Errorf("check the pending updates against the database: %w", err)
	}
	return db, nil
}

// owner is the pack pack_settings records a table under, at its version.
type owner struct {
	pack    string
	version int
}

// dbFacts is what the database says of the tables the zips declare.
type dbFacts struct {
	dialect string // "" without a database
	owners  map[string]owner
	// registered[table][version] is schema_registry's text.
	registered map[string]map[int]string
	// live[table] is the table's schema now, for tables without a
	// registry row at their version.
	live map[string]string
	// unowned are tables that exist while no pack records a version of
	// them.
	unowned map[string]bool
}

func readDatabase(ctx context.Context, db *gorm.DB, zips []*updatezip.Zip) (*dbFacts, error) {
	f := &dbFacts{owners: map[string]owner{}, registered: map[string]map[int]string{}, live: map[string]string{}, unowned: map[string]bool{}}
	if db == nil || !meta.Present(ctx, db) {
		return f, nil
	}
	f.dialect = db.Dialector.Name()
	var settings []meta.Setting
	if err := db.WithContext(ctx).Where("key LIKE ?", meta.VersionKeyPrefix+"%").Find(&settings).Error; err != nil {
		return nil, fmt.Errorf("read %s: %w", meta.SettingsTable, err)
	}
	for _, s := range settings {
		table, ok := strings.CutPrefix(s.Key, meta.VersionKeyPrefix)
		v, err := strconv.Atoi(strings.TrimSpace(s.Value))
		if !ok || err != nil {
			continue // not a version row; a bad value is CheckSchema's to report
		}
		f.owners[table] = owner{pack: s.PackID, version: v}
	}
	// schema_registry is read per pack: a zip's tables are compared with
	// what its own pack registered.
	var tables []string
	for _, z := range zips {
		if z.Manifest == nil {
			continue
		}
		var own []string
		for t := range z.Manifest.Tables() {
			own = append(own, t)
		}
		tables = append(tables, own...)
		regs, err := meta.Registrations(ctx, db, z.Manifest.ID, own)
		if err != nil {
			return nil, err
		}
		for _, r := range regs {
			if f.registered[r.TableName_] == nil {
				f.registered[r.TableName_] = map[int]string{}
			}
			f.registered[r.TableName_][r.TableVersion] = r.SchemaText
		}
	}
	for _, t := range tables {
		o, ok := f.owners[t]
		if _, reg := f.registered[t][o.version]; ok && (o.version == 0 || reg) {
			continue
		}
		text, exists, err := schema.Describe(ctx, db, t)
		if err != nil {
			return nil, err
		}
		switch {
		case exists && (!ok || o.version == 0):
			f.unowned[t] = true
		case exists:
			f.live[t] = text
		}
	}
	return f, nil
}

// tableClaims maps each table to the packs that declare it: the pending
// zips, and the installed packs that no pending zip replaces.
func tableClaims(installed []packs.Installed, zips []*updatezip.Zip) map[string][]string {
	pending := map[string]bool{}
	out := map[string][]string{}
	for _, z := range zips {
		if id := z.ID(); id != "" && !pending[id] {
			pending[id] = true
			for t := range z.Manifest.Tables() {
				out[t] = append(out[t], id)
			}
		}
	}
	for _, p := range installed {
		if p.Manifest == nil || pending[p.ID] {
			continue
		}
		for t := range p.Manifest.Tables() {
			out[t] = append(out[t], p.ID)
		}
	}
	return out
}

func checkClaims(z *updatezip.Zip, claims map[string][]string, f *dbFacts) {
	for _, t := range sortedTables(z.Manifest.Tables()) {
		var others []string
		for _, id := range claims[t] {
			if id != z.ID() {
				others = append(others, id)
			}
		}
		if len(others) > 0 {
			sort.Strings(others)
			z.AddProblem("table %s is also declared by pack %s; two packs cannot own one table: uninstall one, or rename the table in a new step", t, strings.Join(others, ", "))
			continue
		}
		if o, ok := f.owners[t]; ok && o.pack != z.ID() && o.version > 0 {
			z.AddProblem("table %s belongs to pack %s on this database (pack_settings records it at version %d); two packs cannot own one table", t, o.pack, o.version)
			continue
		}
		if f.unowned[t] {
			z.AddProblem("a table named %s exists on this database but no pack records a version of it, so the install would stop at its upgrade; rename or drop it, or run `host db repair` if it is this pack's and the pack is installed", t)
		}
	}
}

func checkVersions(z *updatezip.Zip, f *dbFacts) {
	tables := z.Manifest.Tables()
	for _, t := range sortedTables(tables) {
		if o, ok := f.owners[t]; ok && o.pack == z.ID() && o.version > tables[t] {
			z.AddProblem("table %s is at version %d on this database, and %s %s's code is at version %d: installing it would be a downgrade, which no upgrade runs past; install a release that has every version",
				t, o.version, z.ID(), z.Manifest.Version, tables[t])
		}
	}
	for t, o := range f.owners {
		if _, declared := tables[t]; !declared && o.pack == z.ID() && len(tables) > 0 {
			z.AddWarning("table %s (version %d on this database) is not declared by %s %s: it stays as it is, and no pack upgrades or backs it up", t, o.version, z.ID(), z.Manifest.Version)
		}
	}
}

// checkHistory compares the zip's schema of each table at its installed
// version with what this database registered for it.
func checkHistory(z *updatezip.Zip, f *dbFacts) {
	h := z.Manifest.History
	if f.dialect == "" {
		return
	}
	var ours []string
	for _, t := range sortedTables(z.Manifest.Tables()) {
		if o, ok := f.owners[t]; ok && o.pack == z.ID() && o.version > 0 {
			ours = append(ours, t)
		}
	}
	if len(ours) == 0 {
		return
	}
	switch {
	case h == nil:
		z.AddWarning("the zip records no schema history (built by an older host): its tables' history is not compared with this database before the install; the new version checks its own steps against the database when it upgrades, after the backup, and a changed history then stops the install and rolls it back")
		return
	case !h.Has(f.dialect) && f.dialect == dbconn.Postgres:
		z.AddWarning("%s", updatezip.NoPostgresHistory)
		return
	case !h.Has(f.dialect):
		z.AddWarning("the zip records no %s schema history: its tables' history is not compared with this database before the install", f.dialect)
		return
	case h.Format != schema.Format:
		z.AddWarning("the zip's schema history is in text format %d, this host reads format %d: its tables' history is not compared with this database before the install", h.Format, schema.Format)
		return
	}
	for _, t := range ours {
		v := f.owners[t].version
		zs, ok := h.Schema(t, f.dialect, v)
		if !ok {
			continue // a downgrade, reported by checkVersions
		}
		have, what := f.registered[t][v], "schema_registry holds"
		if _, reg := f.registered[t][v]; !reg {
			have, what = f.live[t], "the live table has"
			if have == "" {
				continue // no table: CheckSchema reports it
			}
		}
		if have == zs.Text {
			continue
		}
		d, _ := schema.Diff(have, zs.Text)
		z.AddProblem("table %s, version %d (installed on this database): the zip's schema differs from the one %s (- this database, + zip): a released step was changed, removed or reordered, and the zip's steps would run on a table they were not written for:\n%s",
			t, v, what, indent(d))
	}
}

func sortedTables(m map[string]int) []string {
	out := make([]string, 0, len(m))
	for t := range m {
		out = append(out, t)
	}
	sort.Strings(out)
	return out
}

func indent(s string) string {
	s = strings.TrimRight(s, "\n")
	return "    " + strings.ReplaceAll(s, "\n", "\n    ")
}

// describeBinaries starts the binary of every zip without problems, from a
// temporary folder and without a database, and compares what it says of
// itself with its manifest.
func describeBinaries(ctx context.Context, env Env, zips []*updatezip.Zip) {
	cfg := env.Packs
	cfg.DB, cfg.HasDB, cfg.DBFor = dbconn.Target{}, false, nil
	platform := env.Platform
	if platform == "" {
		platform = manifest.Platform()
	}
	for _, z := range zips {
		if !z.OK() || z.Manifest == nil {
			continue
		}
		if err := describeOne(ctx, cfg, platform, z); err != nil {
			z.AddProblem("%v", err)
		}
	}
}

func describeOne(ctx context.Context, cfg packs.Config, platform string, z *updatezip.Zip) error {
	dir, err := os.MkdirTemp("", "packhost-pending-")
	if err != nil {
		return fmt.Errorf("start the zip's binary: %w", err)
	}
	defer os.RemoveAll(dir)
	bin, err := updatezip.ExtractBinary(z, platform, dir)
	if err != nil {
		return err
	}
	l, err := packs.NewLauncher(cfg)
	if err != nil {
		return fmt.Errorf("start the zip's binary: %w", err)
	}
	defer l.Close()
	p, err := l.StartBinary(ctx, bin)
	if err != nil {
		return fmt.Errorf("the zip's binary does not start: %w", err)
	}
	info := p.Info
	p.Stop()
	m := z.Manifest
	if info.Id != m.ID || info.Version != m.Version {
		return fmt.Errorf("%w: manifest says %s %s, binary reports %s %s", packs.ErrIdentity, m.ID, m.Version, info.Id, info.Version)
	}
	want := m.Tables()
	if len(want) == 0 {
		return nil // a manifest that lists no tables (a development install's)
	}
	var got []string
	for _, t := range info.Tables {
		got = append(got, fmt.Sprintf("%s@%d", t.Name, t.CodeVersion))
	}
	var listed []string
	for _, t := range sortedTables(want) {
		listed = append(listed, fmt.Sprintf("%s@%d", t, want[t]))
	}
	sort.Strings(got)
	if strings.Join(got, " ") != strings.Join(listed, " ") {
		return fmt.Errorf("%w: manifest lists tables %s, binary declares %s", packs.ErrIdentity, strings.Join(listed, " "), strings.Join(got, " "))
	}
	return nil
}
