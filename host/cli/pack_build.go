package cli

import (
	"fmt"
	"os"
	"strings"

	"github.com/packhost/packhost/host/packs"
	"github.com/packhost/packhost/host/trust"
	"github.com/packhost/packhost/host/updatezip"
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
	var files multiFlag
	fs.Var(&files, "file", "extra file ZIPPATH=LOCALPATH (repeatable)")
	if err := parse(fs, args); err != nil {
		return 0, err
	}
	if fs.NArg() == 0 {
		return 0, usageErr("host pack build needs this platform's pack binary, then optionally OS/ARCH=BINARY for other platforms")
	}
	o := updatezip.BuildOptions{Binary: fs.Arg(0), OutDir: *out, MinHostVersion: *minHost, Released: *released}
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
	l, err := packs.NewLauncher(packs.Config{StartTimeout: c.startTimeout, Logger: c.logger(e)})
	if err != nil {
		return 1, err
	}
	defer l.Close()
	path, m, err := updatezip.Build(e.ctx, l, o)
	if err != nil {
		return 1, err
	}
	signed := "unsigned"
	if o.Key != nil {
		signed = "signed"
	}
	fmt.Fprintf(e.stdout, "built %s (%s %s, %s)\n", path, m.ID, m.Version, signed)
	return 0, nil
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
