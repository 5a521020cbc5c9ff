package cli

import (
	"fmt"
	"path/filepath"

	"github.com/packhost/packhost/host/packs"
)

func packCmd(e env, args []string) (int, error) {
	return sub(e, "pack", args, map[string]func(env, []string) (int, error){
		"build":       packBuildCmd,
		"sign":        packSignCmd,
		"dev-install": devInstallCmd,
		"install":     packInstallCmd,
	})
}

// devInstallCmd installs pack binaries straight into <root>/packs, for the
// development loop: it asks each binary who it is (Describe) and writes the
// manifest from the answer, so the version lives in the pack's Go source
// only.
func devInstallCmd(e env, args []string) (int, error) {
	var c common
	fs := newFlags(e, "pack dev-install")
	c.register(fs)
	if err := parse(fs, args); err != nil {
		return 0, err
	}
	if fs.NArg() == 0 {
		return 0, usageErr("host pack dev-install needs one or more pack binaries")
	}
	log := c.logger(e)
	l, err := packs.NewLauncher(packs.Config{StartTimeout: c.startTimeout, Logger: log})
	if err != nil {
		return 1, err
	}
	defer l.Close()
	for _, bin := range fs.Args() {
		m, err := packs.DevInstall(e.ctx, l, filepath.Join(c.root, packs.Dir), bin)
		if err != nil {
			return 1, fmt.Errorf("dev-install %s: %w", bin, err)
		}
		fmt.Fprintf(e.stdout, "installed %s %s into %s\n", m.ID, m.Version, filepath.Join(c.root, packs.Dir, m.ID))
	}
	return 0, nil
}
