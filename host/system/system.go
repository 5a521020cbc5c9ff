// Package system is one installation: a system directory, its database and
// its running packs. The CLI commands and the HTTP server work through it.
package system

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"gorm.io/gorm"

	"github.com/packhost/packhost/host/decide"
	"github.com/packhost/packhost/host/packroles"
	"github.com/packhost/packhost/host/packs"
	"github.com/packhost/packhost/host/report"
	"github.com/packhost/packhost/host/trust"
	"github.com/packhost/packhost/internal/dbconn"
	"github.com/packhost/packhost/internal/meta"
	"github.com/packhost/packhost/internal/packpb"
	"github.com/packhost/packhost/internal/schema"
	"github.com/packhost/packhost/internal/tablestate"
)

// Folders of a system directory (SPEC).
const (
	PacksDir     = packs.Dir
	DataDir      = "data"
	PendingDir   = "Updates_Pending"
	InstalledDir = "Updates_Installed"
	BackupsDir   = "Updates_Backups"
	// RejectedDir holds the pending zips an operator set aside (`host
	// updates reject`), each with a .reason.txt.
	RejectedDir    = "Updates_Rejected"
	TrustedKeysDir = trust.Dir
	SQLiteFile     = "host.db"
)

// Options says which installation to open and how.
type Options struct {
	Root string
	// DBFlag is the value of --db: empty for the embedded SQLite file.
	DBFlag string
	// ReadOnly opens the database read-only, creates nothing and writes
	// nothing (host status).
	ReadOnly bool
	// RenewRoles gives the packs' database roles new passwords (a serving
	// host's start).
	RenewRoles bool
	// NoPacks skips starting the packs.
	NoPacks      bool
	StartTimeout time.Duration
	RPCTimeout   time.Duration
	// Hashes, when set, is the verified-binary cache packs start with.
	Hashes *packs.HashCache
	Logger hclog.Logger
	// Pending inspects Updates_Pending for the report; when nil the zips
	// are only listed by name and size.
	Pending func(root string, db dbconn.Target) ([]report.PendingUpdate, error)
	// Checks adds problems found outside the packs (an interrupted
	// install) to the report.
	Checks func(root string) []string
	// Warnings adds warnings (an update feed that has not verified for
	// long) to the report.
	Warnings func(root string) []string
}

// System is an open installation. Close stops its packs and its database.
type System struct {
	Root   string
	Target dbconn.Target
	Log    hclog.Logger
	// DB is the host's own connection; nil when ReadOnly found no database.
	DB *gorm.DB

	Launcher *packs.Launcher
	// Packs are the running packs, core first.
	Packs []*packs.Pack
	// Failed holds a *packs.StartError for each pack that did not start.
	Failed []error
	// Installed lists every installed pack, started or not.
	Installed []packs.Installed

	pending  func(root string, db dbconn.Target) ([]report.PendingUpdate, error)
	checks   func(root string) []string
	warnings func(root string) []string
	cleanup  []func()
	// database names the database for reports (a copy read by status
	// is named as the original).
	database string
	// key is the secret of the packs' database roles (PostgreSQL).
	key []byte
	// rolesMissing: status found no roles to start the packs with;
	// rolesMissingData: and the database holds tables already.
	rolesMissing, rolesMissingData bool
}

// Path joins elements under the system directory.
func (s *System) Path(elem ...string) string {
	return filepath.Join(append([]string{s.Root}, elem...)...)
}

// Open opens the installation at opts.Root: creates the missing folders and
// the meta tables (unless ReadOnly), opens the database, and starts every
// installed pack in parallel.
func Open(ctx context.Context, opts Options) (*System, error) {
	if opts.Logger == nil {
		opts.Logger = hclog.NewNullLogger()
	}
	root, err := filepath.Abs(opts.Root)
	if err != nil {
		return nil, fmt.Errorf("system directory %s: %w", opts.Root, err)
	}
	if fi, err := os.Stat(root); err != nil || !fi.IsDir() {
		return nil, fmt.Errorf("system directory %s does not exist or is not a directory; create it or pass --root", root)
	}
	s := &System{Root: root, Log: opts.Logger, pending: opts.Pending, checks: opts.Checks, warnings: opts.Warnings}
	s.Target, err = dbconn.ParseFlag(opts.DBFlag, s.Path(DataDir, SQLiteFile))
	if err != nil {
		return nil, err
	}
	s.database = s.Target.String()
	hasDB := true
	if opts.ReadOnly {
		s.Target.ReadOnly = true
		if s.Target.Driver == dbconn.SQLite {
			if _, err := os.Stat(s.Target.DSN); errors.Is(err, os.ErrNotExist) {
				hasDB = false
			} else if !dbconn.SQLiteWALEmpty(s.Target.DSN) {
				// A write-ahead log with frames (a command is writing, or
				// one was killed): read a copy, so that nothing of the
				// system's own files is touched.
				if err := s.readCopy(); err != nil {
					return nil, err
				}
			}
		}
	} else {
		for _, d := range []string{PacksDir, DataDir, PendingDir, InstalledDir, BackupsDir} {
			if err := os.MkdirAll(s.Path(d), 0o755); err != nil {
				return nil, fmt.Errorf("create %s: %w", d, err)
			}
		}
		// data/ holds the embedded database, the admin session state and
		// the feed state: only the host's user may read it.
		if err := os.Chmod(s.Path(DataDir), 0o700); err != nil {
			return nil, fmt.Errorf("protect %s: %w", DataDir, err)
		}
	}
	if hasDB {
		if s.DB, err = dbconn.Open(s.Target); err != nil {
			return nil, fmt.Errorf("%w; check --db", err)
		}
		if !opts.ReadOnly {
			if err := meta.Ensure(ctx, s.DB); err != nil {
				s.Close()
				return nil, err
			}
		}
	}
	if s.Target.Driver == dbconn.Postgres {
		if err := s.roleKey(ctx, opts); err != nil {
			s.Close()
			return nil, err
		}
	}
	if s.Installed, err = packs.Discover(root); err != nil {
		s.Close()
		return nil, err
	}
	if opts.NoPacks {
		return s, nil
	}
	s.Launcher, err = packs.NewLauncher(s.PackConfig(opts, hasDB))
	if err != nil {
		s.Close()
		return nil, err
	}
	s.Packs, s.Failed = s.Launcher.StartAll(ctx, s.Installed)
	s.dropTableClashes()
	if !opts.ReadOnly && s.DB != nil {
		if err := s.SetupRoles(ctx, s.Packs); err != nil {
			s.Close()
			return nil, err
		}
	}
	return s, nil
}

const errRolesMissing = "their database roles are not set up yet (a host of an earlier version made this database): `host run` or `host db upgrade` sets them up"

// roleKey reads (status) or makes (every other command) the secret the
// packs' database passwords derive from; RenewRoles makes a new one.
func (s *System) roleKey(ctx context.Context, opts Options) error {
	key, err := packroles.LoadKey(s.Root)
	switch {
	case opts.ReadOnly && errors.Is(err, packroles.ErrNoKey):
		// No host made the roles yet: status reads nothing through the
		// packs (see Report).
		s.rolesMissing = true
		if s.DB != nil && meta.Present(ctx, s.DB) {
			s.rolesMissingData = true
		}
		return nil
	case opts.ReadOnly && err != nil:
		return err
	case !opts.ReadOnly && (opts.RenewRoles || errors.Is(err, packroles.ErrNoKey)):
		key, err = packroles.NewKey(s.Root)
	}
	if err != nil {
		return err
	}
	s.key = key
	return nil
}

// PackConfig is how the system starts its packs (also for an install):
// on PostgreSQL each pack connects as its own role (host/packroles).
func (s *System) PackConfig(opts Options, hasDB bool) packs.Config {
	c := packs.Config{DB: s.Target, HasDB: hasDB, StartTimeout: opts.StartTimeout, RPCTimeout: opts.RPCTimeout,
		Hashes: opts.Hashes, Logger: opts.Logger}
	if s.Target.Driver == dbconn.Postgres {
		db := packroles.DatabaseName(s.Target)
		c.DBFor = func(id string) (dbconn.Target, bool) {
			if s.key == nil {
				return dbconn.Target{}, false
			}
			r := packroles.For(db, id, s.Root)
			t, err := packroles.Target(s.Target, r, packroles.Password(s.key, r.Login))
			return t, err == nil
		}
	}
	return c
}

// SetupRoles fits the packs' database roles to what the running packs
// declare (PostgreSQL; nothing on SQLite or for a read-only system).
func (s *System) SetupRoles(ctx context.Context, running []*packs.Pack) error {
	if s.Target.Driver != dbconn.Postgres || s.Target.ReadOnly || s.DB == nil || s.key == nil {
		return nil
	}
	var list []packroles.Pack
	for _, p := range running {
		rp := packroles.Pack{ID: p.ID, Reads: p.Info.GetReads()}
		for _, t := range p.Info.GetTables() {
			rp.Tables = append(rp.Tables, t.GetName())
		}
		list = append(list, rp)
	}
	return packroles.Setup(ctx, s.DB, packroles.DatabaseName(s.Target), s.Root, s.key, list)
}

// dropTableClashes stops the packs that declare a table another pack also
// declares: neither may touch it until one is uninstalled.
func (s *System) dropTableClashes() {
	owner := map[string]string{}
	clash := map[string][]string{} // pack id -> reasons
	for _, p := range s.Packs {
		for _, t := range p.Info.Tables {
			if o, ok := owner[t.Name]; ok {
				msg := fmt.Sprintf("table %s is declared by both %s and %s; uninstall one of them", t.Name, o, p.ID)
				clash[o] = append(clash[o], msg)
				clash[p.ID] = append(clash[p.ID], msg)
				continue
			}
			owner[t.Name] = p.ID
		}
	}
	if len(clash) == 0 {
		return
	}
	kept := s.Packs[:0]
	for _, p := range s.Packs {
		if reasons, ok := clash[p.ID]; ok {
			p.Stop()
			s.Failed = append(s.Failed, &packs.StartError{ID: p.ID, Err: errors.New(strings.Join(reasons, "; "))})
			continue
		}
		kept = append(kept, p)
	}
	s.Packs = kept
}

// readCopy points s's SQLite target at a copy of the database and its
// write-ahead log in a private temporary directory, removed at Close.
func (s *System) readCopy() error {
	dir, err := os.MkdirTemp("", "packhost-status-")
	if err != nil {
		return fmt.Errorf("copy the database to read it: %w", err)
	}
	dst := filepath.Join(dir, filepath.Base(s.Target.DSN))
	for _, suffix := range []string{"", "-wal"} {
		if err := copyFile(s.Target.DSN+suffix, dst+suffix); err != nil {
			os.RemoveAll(dir)
			return fmt.Errorf("copy the database to read it: %w", err)
		}
	}
	s.Target.DSN, s.Target.ReadOnly = dst, false
	s.cleanup = append(s.cleanup, func() { os.RemoveAll(dir) })
	return nil
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// Close stops the packs and closes the database. It is safe on nil and
// more than once.
func (s *System) Close() {
	if s == nil {
		return
	}
	defer func() {
		for _, f := range s.cleanup {
			f()
		}
		s.cleanup = nil
	}()
	if s.Launcher != nil {
		s.Launcher.Close()
	}
	if s.DB != nil {
		_ = dbconn.Close(s.DB)
		s.DB = nil
	}
}

func (s *System) coreInstalled() bool {
	for _, p := range s.Installed {
		if p.ID == "core" {
			return true
		}
	}
	return false
}

// Pack returns the running pack with the given id.
func (s *System) Pack(id string) *packs.Pack {
	for _, p := range s.Packs {
		if p.ID == id {
			return p
		}
	}
	return nil
}

// Report checks every running pack's tables and lists pending updates.
func (s *System) Report(ctx context.Context) (*report.Report, error) {
	r := &report.Report{Root: s.Root, Database: s.database}
	running := map[string]*packs.Pack{}
	for _, p := range s.Packs {
		running[p.ID] = p
	}
	// Every pack checks its own tables in its own process: ask them all at
	// once.
	type checked struct {
		states []*packpb.TableStatus
		err    error
	}
	results := make(map[string]*checked, len(s.Packs))
	var wg sync.WaitGroup
	for _, p := range s.Packs {
		c := &checked{}
		results[p.ID] = c
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.states, c.err = p.CheckSchema(ctx)
		}()
	}
	wg.Wait()
	for _, inst := range s.Installed {
		pr := report.Pack{ID: inst.ID, Path: inst.Dir}
		if inst.Manifest != nil {
			pr.Version = inst.Manifest.Version
			pr.Description = inst.Manifest.Description
		}
		p, ok := running[inst.ID]
		if !ok {
			pr.Error = startErrorOf(s.Failed, inst.ID)
			r.Packs = append(r.Packs, pr)
			continue
		}
		pr.Running = true
		pr.Version, pr.Description = p.Info.Version, p.Info.Description
		states, err := results[p.ID].states, results[p.ID].err
		if err != nil {
			pr.Running, pr.CheckFailed = false, true
			pr.Error = fmt.Sprintf("check schema: %v", err)
			r.Problems = append(r.Problems, fmt.Sprintf("pack %s: check schema: %v", p.ID, err))
			r.Packs = append(r.Packs, pr)
			if errors.Is(err, packs.ErrNotAnswering) {
				// A pack that does not answer is left out, as one that did
				// not start; it is not left running unanswered.
				p.Stop()
			}
			continue
		}
		if s.rolesMissingData {
			pr.Running, pr.CheckFailed = false, true
			pr.Error = "not checked: " + errRolesMissing
			r.Packs = append(r.Packs, pr)
			continue
		}
		for _, t := range states {
			tr := TableReport(t)
			if s.rolesMissing {
				// A database no host has set up: nothing of any pack is
				// recorded. The host looks for the tables itself.
				tr.Detail = ""
				if _, exists, err := schema.Describe(ctx, s.DB, t.Name); err == nil && exists {
					tr.State = tablestate.Drift
					tr.Detail = fmt.Sprintf("a table named %s exists but no version is recorded for it: it was not made by this system; restore the backup it came from, or rename it", t.Name)
				}
			}
			pr.Tables = append(pr.Tables, tr)
		}
		r.Packs = append(r.Packs, pr)
	}
	if s.rolesMissingData {
		r.Problems = append(r.Problems, "the packs were not checked: "+errRolesMissing)
		r.Standing = append(r.Standing, "the packs were not checked: "+errRolesMissing)
	}
	for _, err := range s.Failed {
		r.Problems = append(r.Problems, err.Error())
	}
	standing := func(p string) {
		r.Problems = append(r.Problems, p)
		r.Standing = append(r.Standing, p)
	}
	pending, err := s.PendingUpdates()
	if err != nil {
		standing(err.Error())
	}
	r.PendingUpdates = pending
	if !s.coreInstalled() && len(pending) == 0 {
		standing("the core pack is not installed: drop its update zip into " + PendingDir +
			" and run `host run --install-updates` (in a checkout, `make build` installs it)")
	}
	if s.checks != nil {
		for _, p := range s.checks(s.Root) {
			standing(p)
		}
	}
	if s.warnings != nil {
		r.Warnings = s.warnings(s.Root)
	}
	decide.Annotate(r)
	return r, nil
}

func startErrorOf(failed []error, id string) string {
	for _, err := range failed {
		var se *packs.StartError
		if errors.As(err, &se) && se.ID == id {
			return se.Error()
		}
	}
	return "not started"
}

// TableReport converts a pack's table status for the report.
func TableReport(t *packpb.TableStatus) report.Table {
	return report.Table{
		Name:             t.Name,
		InstalledVersion: int(t.InstalledVersion),
		CodeVersion:      int(t.CodeVersion),
		State:            tablestate.Name(t.State),
		MatchedVersion:   int(t.MatchedVersion),
		Detail:           t.Detail,
		Diff:             t.Diff,
		DriftColumns:     t.DriftColumns,
	}
}

// PendingUpdates reports the zips waiting in Updates_Pending.
func (s *System) PendingUpdates() ([]report.PendingUpdate, error) {
	if s.pending != nil {
		return s.pending(s.Root, s.Target)
	}
	entries, err := os.ReadDir(s.Path(PendingDir))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", PendingDir, err)
	}
	var out []report.PendingUpdate
	for _, e := range entries {
		if e.IsDir() || !strings.HasSuffix(strings.ToLower(e.Name()), ".zip") {
			continue
		}
		info, err := e.Info()
		if err != nil {
			continue
		}
		out = append(out, report.PendingUpdate{File: e.Name(), Size: info.Size()})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].File < out[j].File })
	return out, nil
}

// ConfigFile is the system's settings file, <root>/host.json. Each part of
// the host reads its own section ("feed", "web", "retention"); a missing
// file or section means the defaults.
const ConfigFile = "host.json"

// ReadConfigSection decodes the section key of root's host.json into v,
// refusing fields v does not have; v keeps its values when the file or the
// section is missing.
func ReadConfigSection(root, key string, v any) error {
	path := filepath.Join(root, ConfigFile)
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read %s: %w", path, err)
	}
	var sections map[string]json.RawMessage
	if err := json.Unmarshal(data, &sections); err != nil {
		return fmt.Errorf("%s: not a JSON object: %w", path, err)
	}
	raw, ok := sections[key]
	if !ok {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("%s: section %q: %w", path, key, err)
	}
	return nil
}
