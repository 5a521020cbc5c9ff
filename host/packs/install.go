package packs

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"time"

	"github.com/packhost/packhost/host/manifest"
)

// InstallDir writes the pack's directory beside the old one and swaps it in
// with renames, so the pack is never a mix of old and new files.
func InstallDir(packsDir string, m *manifest.Manifest, bin string) error {
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

// DevInstall asks a pack binary who it is (Describe) and installs it under
// packsDir with a manifest made from the answer, so a pack's version lives
// in its Go source only. It is the development loop's install.
func DevInstall(ctx context.Context, l *Launcher, packsDir, bin string) (*manifest.Manifest, error) {
	p, err := l.StartBinary(ctx, bin)
	if err != nil {
		return nil, err
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
		return nil, err
	}
	if err := InstallDir(packsDir, m, bin); err != nil {
		return nil, err
	}
	return m, nil
}
