package cli

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/packhost/packhost/host/install"
	"github.com/packhost/packhost/host/packs"
	"github.com/packhost/packhost/host/preflight"
	"github.com/packhost/packhost/host/progress"
	"github.com/packhost/packhost/host/recovery"
	"github.com/packhost/packhost/host/report"
	"github.com/packhost/packhost/host/system"
	"github.com/packhost/packhost/host/trust"
	"github.com/packhost/packhost/host/updatezip"
	"github.com/packhost/packhost/internal/dbconn"
	"github.com/packhost/packhost/internal/lint"
)

// keygenCmd writes an ed25519 key pair for signing update zips.
func keygenCmd(e env, args []string) (int, error) {
	var c common
	fs := newFlags(e, "keygen")
	c.register(fs)
	dir := fs.String("dir", ".", "folder to write <name>.key and <name>.pub into")
	name := fs.String("name", "packhost", "key name (the files' base name)")
	if err := parse(fs, args); err != nil {
		return 0, err
	}
	if fs.NArg() > 0 {
		return 0, usageErr("host keygen takes no arguments, got %q", fs.Args())
	}
	priv, pub, err := trust.Keygen(*dir, *name)
	if err != nil {
		return 1, err
	}
	fmt.Fprintf(e.stdout, "private key %s (keep it secret; sign with `host pack sign --key %s ZIP`)\npublic key  %s (copy it into <root>/%s/ to trust it)\n",
		priv, priv, pub, trust.Dir)
	return 0, nil
}

// packBuildCmd writes <id>-<version>.zip from a pack binary. It records
// the schema of every version of every table (SQLite always, PostgreSQL
// when a server is given) with the lint of every step, and refuses a
// history that differs from an earlier release's (--previous).
func packBuildCmd(e env, args []string) (int, error) {
	var c common
	fs := newFlags(e, "pack build")
	c.register(fs)
	out := fs.String("out", ".", "folder to write the zip into")
	whatsNew := fs.String("whats-new", "", "Markdown file shown to the admin as the release's news")
	minHost := fs.String("min-host-version", "", "oldest host version the pack runs on")
	released := fs.String("released", "", "release date YYYY-MM-DD (default today, UTC)")
	keyFile := fs.String("key", "", "private key file: sign the zip too")
	pgDSN := fs.String("pg-dsn", "", "PostgreSQL server (postgres://...) to record the PostgreSQL history on, in a scratch schema that is rolled back (default $"+updatezip.EnvBuildPostgres+")")
	var files, previous multiFlag
	fs.Var(&files, "file", "extra file ZIPPATH=LOCALPATH (repeatable)")
	fs.Var(&previous, "previous", "an earlier release's zip or pack.json, or a folder of them, whose history this build must keep (repeatable)")
	if err := parse(fs, args); err != nil {
		return 0, err
	}
	if fs.NArg() == 0 {
		return 0, usageErr("host pack build needs this platform's pack binary, then optionally OS/ARCH=BINARY for other platforms")
	}
	o := updatezip.BuildOptions{Binary: fs.Arg(0), OutDir: *out, MinHostVersion: *minHost, Released: *released,
		Previous: previous, PostgresDSN: *pgDSN}
	if o.PostgresDSN == "" {
		o.PostgresDSN = os.Getenv(updatezip.EnvBuildPostgres)
	}
	if o.PostgresDSN != "" {
		if t, err := dbconn.ParseFlag(o.PostgresDSN, ""); err != nil || t.Driver != dbconn.Postgres {
			return 0, usageErr("--pg-dsn (or %s) must be a postgres:// URL", updatezip.EnvBuildPostgres)
		}
	}
	for _, a := range fs.Args()[1:] {
		plat, path, ok := strings.Cut(a, "=")
		if !ok {
			return 0, usageErr("%q: other platforms' binaries are given as OS/ARCH=PATH", a)
		}
		if o.Others == nil {
			o.Others = map[string]string{}
		}
		o.Others[plat] = path
	}
	for _, f := range files {
		zp, path, ok := strings.Cut(f, "=")
		if !ok {
			return 0, usageErr("--file %q: want ZIPPATH=LOCALPATH", f)
		}
		if o.Files == nil {
			o.Files = map[string]string{}
		}
		o.Files[zp] = path
	}
	if *whatsNew != "" {
		data, err := os.ReadFile(*whatsNew)
		if err != nil {
			return 1, fmt.Errorf("pack build: %w", err)
		}
		o.WhatsNew = string(data)
	}
	if *keyFile != "" {
		key, err := trust.ReadPrivateKey(*keyFile)
		if err != nil {
			return 1, fmt.Errorf("pack build: %w", err)
		}
		o.Key = key
	}
	o.Launch = packs.Config{StartTimeout: c.startTimeout, Logger: c.logger(e)}
	res, err := updatezip.Build(e.ctx, o)
	if err != nil {
		return 1, err
	}
	printBuild(e, res, o.Key != nil)
	return 0, nil
}

// printBuild says what a build wrote: the zip, the history it recorded,
// the earlier releases it kept, what it could not check, and the lint.
func printBuild(e env, res *updatezip.BuildResult, signed bool) {
	m := res.Manifest
	sig := "unsigned"
	if signed {
		sig = "signed"
	}
	fmt.Fprintf(e.stdout, "built %s (%s %s, %s)\n", res.Path, m.ID, m.Version, sig)
	versions := 0
	for _, n := range m.History.Tables() {
		versions += n
	}
	fmt.Fprintf(e.stdout, "history: %d table(s), %d version(s), recorded on %s\n", len(m.History.Tables()), versions, strings.Join(m.History.Dialects, " and "))
	if len(res.Previous) > 0 {
		var names []string
		for _, r := range res.Previous {
			names = append(names, r.Manifest.Version+" ("+filepath.Base(r.Path)+")")
		}
		fmt.Fprintf(e.stdout, "kept the history of the earlier releases %s\n", strings.Join(names, ", "))
	}
	for _, n := range res.Notes {
		fmt.Fprintf(e.stdout, "note: %s\n", n)
	}
	// With earlier releases, the steps they already shipped were linted
	// when they were built: show the new ones.
	since, scope := map[string]int{}, "every step"
	if n := len(res.Previous); n > 0 {
		last := res.Previous[n-1].Manifest
		since, scope = last.Tables(), "the steps new since "+last.Version
	}
	var lines []string
	for _, c := range m.DBChanges {
		if c.To <= since[c.Table] {
			continue
		}
		for _, f := range c.Lint {
			kind := lint.Rules[f.Rule].Kind
			if kind == "" {
				kind = "finding"
			}
			lines = append(lines, fmt.Sprintf("  %s %d -> %d (%s): %s %s [%s]", c.Table, c.From, c.To, c.Summary, f.Rule, f.Message, kind))
		}
	}
	if len(lines) == 0 {
		fmt.Fprintf(e.stdout, "lint of %s: no findings\n", scope)
		return
	}
	fmt.Fprintf(e.stdout, "lint of %s: %d finding(s):\n%s\n", scope, len(lines), strings.Join(lines, "\n"))
}

type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

// packSignCmd signs the manifest of update zips.
func packSignCmd(e env, args []string) (int, error) {
	var c common
	fs := newFlags(e, "pack sign")
	c.register(fs)
	keyFile := fs.String("key", "", "private key file (from `host keygen`)")
	if err := parse(fs, args); err != nil {
		return 0, err
	}
	if *keyFile == "" || fs.NArg() == 0 {
		return 0, usageErr("host pack sign needs --key KEYFILE and one or more zips")
	}
	key, err := trust.ReadPrivateKey(*keyFile)
	if err != nil {
		return 1, err
	}
	for _, z := range fs.Args() {
		if err := updatezip.Sign(z, key); err != nil {
			return 1, err
		}
		fmt.Fprintf(e.stdout, "signed %s\n", z)
	}
	return 0, nil
}

// packInstallCmd installs update zips the way `host run --install-updates`
// does: it copies the zips given into Updates_Pending, then installs
// everything pending. The development loop (`make build`) uses it.
func packInstallCmd(e env, args []string) (int, error) {
	var c common
	fs := newFlags(e, "pack install")
	c.register(fs)
	noBackup := fs.Bool("no-backup", false, "do not back up the system directory and the tables first")
	reinstall := fs.Bool("reinstall", false, "accept a zip of the installed version (development loop)")
	recoverOnly := fs.Bool("recover-only", false, "finish or undo an interrupted install, then stop")
	if err := parse(fs, args); err != nil {
		return 0, err
	}
	if err := os.MkdirAll(c.root, 0o755); err != nil {
		return 1, err
	}
	if err := recoverInstall(e, c); err != nil {
		return 1, err
	}
	if *recoverOnly {
		return 0, nil
	}
	pending := filepath.Join(c.root, system.PendingDir)
	if err := os.MkdirAll(pending, 0o755); err != nil {
		return 1, err
	}
	for _, z := range fs.Args() {
		if err := copyInto(z, pending); err != nil {
			return 1, fmt.Errorf("pack install: %w", err)
		}
	}
	sys, err := system.Open(e.ctx, c.options(e, false))
	if err != nil {
		return 1, err
	}
	defer sys.Close()
	if err := installUpdates(e, sys, *noBackup, *reinstall); err != nil {
		return 1, err
	}
	return 0, nil
}

func copyInto(src, dir string) error {
	dst := filepath.Join(dir, filepath.Base(src))
	if a, err := filepath.Abs(src); err == nil {
		if b, err := filepath.Abs(dst); err == nil && a == b {
			return nil
		}
	}
	data, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	tmp := dst + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, dst)
}

// installPending installs every zip in Updates_Pending (host run
// --install-updates). It stops sys's packs as it goes: the caller opens
// the system again after a nil return and serves from the new versions.
// On error nothing was installed (the old versions are back, the zips
// still pending) and the error says what failed.
func installPending(e env, sys *system.System, noBackup bool) error {
	return installUpdates(e, sys, noBackup, false)
}

func installUpdates(e env, sys *system.System, noBackup, reinstall bool) error {
	bars := progress.New(e.stdout, sys.Log)
	lastTenth := int64(-1)
	in := &install.Installer{
		Root:     sys.Root,
		Inspect:  updatezip.Options{HostVersion: HostVersion, AllowSameVersion: reinstall},
		Packs:    packs.Config{DB: sys.Target, HasDB: sys.DB != nil, Logger: sys.Log},
		DB:       install.PackDB{Root: sys.Root, Log: sys.Log, Target: sys.Target, DB: sys.DB},
		NoBackup: noBackup,
		Log:      sys.Log,
		Progress: func(done, total int64) {
			// A log line per 10% when stdout is not a terminal.
			if pct := done * 10 / max(total, 1); pct != lastTenth || done == total {
				lastTenth = pct
				bars.Update("system backup", done, total, "")
			}
		},
	}
	res, err := in.Install(e.ctx, sys.Packs)
	if err != nil {
		return err
	}
	if res.SystemBackup != "" {
		bars.Done("system backup", res.SystemBackup)
	}
	for i, z := range res.Zips {
		fmt.Fprintf(e.stdout, "installed %s %s (was %s); zip moved to %s\n", z.Manifest.ID, z.Manifest.Version,
			orNew(z.Installed), res.Moved[i])
	}
	return nil
}

func orNew(v string) string {
	if v == "" {
		return "not installed"
	}
	return v
}

// recoverInstall finishes or undoes an install the host did not complete.
// It runs before anything else at start; when the tables must be restored
// too, it starts the old packs to do it.
func recoverInstall(e env, c common) error {
	log := c.logger(e)
	r, err := recovery.Recover(c.root)
	if err != nil {
		return err
	}
	if r.Action == "" && len(r.Swept) == 0 && r.Warning == "" {
		return nil
	}
	log.Warn(r.String())
	if !r.NeedsDBRestore {
		return nil
	}
	sys, err := system.Open(e.ctx, c.options(e, false))
	if err != nil {
		return fmt.Errorf("recover an interrupted install: %w", err)
	}
	defer sys.Close()
	if err := recovery.FinishRecovery(e.ctx, sys.Root, sys.Packs, install.PackDB{Root: sys.Root, Log: log, Target: sys.Target, DB: sys.DB}); err != nil {
		return err
	}
	log.Info("the database is back as it was before the interrupted install")
	return nil
}

// inspectPending reports the zips in Updates_Pending with what they hold
// and every problem an install would refuse them for (host/preflight:
// this database, the zips' binaries), changing nothing.
func inspectPending(e env, c common, root string) ([]report.PendingUpdate, error) {
	zips, err := updatezip.Inspect(root, updatezip.Options{HostVersion: HostVersion})
	if err != nil {
		return updatezip.Reports(zips), err
	}
	target, err := dbconn.ParseFlag(c.db, filepath.Join(root, system.DataDir, system.SQLiteFile))
	if err != nil {
		return updatezip.Reports(zips), err
	}
	env := preflight.Env{Root: root, Packs: packs.Config{DB: target, HasDB: true, StartTimeout: c.startTimeout, Logger: c.logger(e)}}
	err = preflight.Check(e.ctx, env, zips)
	return updatezip.Reports(zips), err
}

// interruptedInstall is a problem when an install did not finish.
func interruptedInstall(root string) []string {
	busy, err := recovery.HasJournal(root)
	switch {
	case err != nil:
		return []string{fmt.Sprintf("read the install journal %s: %v", recovery.JournalFile, err)}
	case busy:
		return []string{fmt.Sprintf("an install was interrupted (%s): the next `host run` or `host db` command finishes or undoes it before anything else", recovery.JournalFile)}
	}
	return nil
}
