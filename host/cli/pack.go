package cli

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"time"

	"github.com/packhost/packhost/host/manifest"
	"github.com/packhost/packhost/host/packs"
)

func packCmd(e env, args []string) (int, error) {
	return sub(e, "pack", args, map[string]func(env, []string) (int, error){
		"build":       notYet("pack build"),
		"sign":        notYet("pack sign"),
		"dev-install": devInstallCmd,
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
		p, err := l.StartBinary(e.ctx, bin)
		if err != nil {
			return 1, fmt.Errorf("dev-install %s: %w", bin, err)
		}
		info := p.Info
		p.Stop()
		m := &manifest.Manifest{
			ID:          info.Id,
			Version:     info.Version,
			Description: info.Description,
			Released:    time.Now().UTC().Format("2006-01-02"),
			DependsOn:   info.DependsOn,
			Binaries: map[string]manifest.Binary{manifest.Platform(): {
				Path:   fmt.Sprintf("bin/%s-%s-%s", info.Id, runtime.GOOS, runtime.GOARCH),
				SHA256: p.SHA256,
			}},
		}
		if err := m.Validate(); err != nil {
			return 1, fmt.Errorf("dev-install %s: %w", bin, err)
		}
		if err := installDir(filepath.Join(c.root, packs.Dir), m, bin); err != nil {
			return 1, fmt.Errorf("dev-install %s: %w", bin, err)
		}
		fmt.Fprintf(e.stdout, "installed %s %s into %s\n", m.ID, m.Version, filepath.Join(c.root, packs.Dir, m.ID))
	}
	return 0, nil
}

// installDir writes the pack's directory beside the old one and swaps it in
// with renames, so the pack is never a mix of old and new files.
func installDir(packsDir string, m *manifest.Manifest, bin string) error {
	if err := os.MkdirAll(packsDir, 0o755); err != nil {
		return err
	}
	stage, err := os.MkdirTemp(packsDir, "."+m.ID+".staging-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(stage)
	if err := os.Chmod(stage, 0o755); err != nil {
		return err
	}
	b := m.Binaries[manifest.Platform()]
	dst := filepath.Join(stage, filepath.FromSlash(b.Path))
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	if err := copyFile(bin, dst, 0o755); err != nil {
		return err
	}
	data, err := m.Marshal()
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(stage, manifest.FileName), data, 0o644); err != nil {
		return err
	}
	final := filepath.Join(packsDir, m.ID)
	old := ""
	if _, err := os.Stat(final); err == nil {
		old = stage + ".old"
		if err := os.Rename(final, old); err != nil {
			return err
		}
	}
	if err := os.Rename(stage, final); err != nil {
		if old != "" {
			_ = os.Rename(old, final)
		}
		return err
	}
	if old != "" {
		return os.RemoveAll(old)
	}
	return nil
}

func copyFile(src, dst string, mode os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	if err := out.Sync(); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
