package updatezip

import (
	"archive/zip"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/packhost/packhost/host/manifest"
)

// Extract writes the zip's files into dir (which must not exist), checking
// every entry again: the zip may have changed since it was inspected.
func Extract(z *Zip, dir string, lim Limits) error {
	zr, err := zip.OpenReader(z.Path)
	if err != nil {
		return err
	}
	defer zr.Close()
	files, problems := scanEntries(&zr.Reader, lim)
	if len(problems) > 0 {
		return fmt.Errorf("%s changed since it was inspected: %s", z.File, strings.Join(problems, "; "))
	}
	mf := files[manifest.FileName]
	if mf == nil {
		return fmt.Errorf("%s changed since it was inspected: no %s", z.File, manifest.FileName)
	}
	data, err := readEntry(mf, maxManifestSize)
	if err != nil || string(data) != string(z.ManifestBytes) {
		return fmt.Errorf("%s changed since it was inspected: %s differs", z.File, manifest.FileName)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, manifest.FileName), data, 0o644); err != nil {
		return err
	}
	if sf := files[SigFileName]; sf != nil {
		sig, err := readEntry(sf, maxManifestSize)
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, SigFileName), sig, 0o644); err != nil {
			return err
		}
	}
	m := z.Manifest
	want := map[string]string{}
	modes := map[string]os.FileMode{}
	for _, b := range m.Binaries {
		want[b.Path] = b.SHA256
		modes[b.Path] = 0o755
	}
	for p, s := range m.Files {
		want[p] = s
	}
	for _, p := range sortedKeys(want) {
		f := files[p]
		if f == nil {
			return fmt.Errorf("%s changed since it was inspected: %s is gone", z.File, p)
		}
		mode := modes[p]
		if mode == 0 {
			mode = 0o644
		}
		if err := extractFile(f, filepath.Join(dir, filepath.FromSlash(p)), want[p], mode); err != nil {
			return fmt.Errorf("%s: %s: %w", z.File, p, err)
		}
	}
	return nil
}

func extractFile(f *zip.File, dst, wantSum string, mode os.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	rc, err := f.Open()
	if err != nil {
		return err
	}
	defer rc.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, mode)
	if err != nil {
		return err
	}
	h := sha256.New()
	if _, err := io.Copy(io.MultiWriter(out, h), rc); err != nil {
		out.Close()
		return dataErr(err)
	}
	if err := out.Sync(); err != nil {
		out.Close()
		return err
	}
	if err := out.Close(); err != nil {
		return err
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != wantSum {
		return fmt.Errorf("sha256 mismatch (manifest %s, file %s)", short(wantSum), short(got))
	}
	return nil
}

// ExtractBinary writes the zip's binary for platform into dir (which must
// exist) and returns its path, checking its sha256 against the manifest:
// to ask a pending zip's binary who it is before anything is installed.
func ExtractBinary(z *Zip, platform, dir string) (string, error) {
	if z.Manifest == nil {
		return "", fmt.Errorf("%s: no manifest", z.File)
	}
	b, err := z.Manifest.BinaryFor(platform)
	if err != nil {
		return "", err
	}
	zr, err := zip.OpenReader(z.Path)
	if err != nil {
		return "", err
	}
	defer zr.Close()
	for _, f := range zr.File {
		if f.Name != b.Path {
			continue
		}
		dst := filepath.Join(dir, filepath.Base(filepath.FromSlash(b.Path)))
		if err := extractFile(f, dst, b.SHA256, 0o755); err != nil {
			return "", fmt.Errorf("%s: %s: %w", z.File, b.Path, err)
		}
		return dst, nil
	}
	return "", fmt.Errorf("%s: %s is gone", z.File, b.Path)
}
