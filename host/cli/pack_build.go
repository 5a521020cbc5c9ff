package cli

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/packhost/packhost/host/packs"
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

// packBuildCmd writes <id>-<version>.zip from a pack binary.
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
