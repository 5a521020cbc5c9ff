package updatezip

import (
	"archive/zip"
	"context"
	"crypto/ed25519"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/packhost/packhost/host/manifest"
	"github.com/packhost/packhost/host/packs"
	"github.com/packhost/packhost/host/trust"
)

// BuildOptions says what goes into an update zip.
type BuildOptions struct {
	// Binary is the pack executable for this machine's platform; Build
	// starts it and asks it to Describe itself (id, version, tables).
	Binary string
	// Others are executables of the same release for other platforms,
	// keyed like "linux/arm64".
	Others map[string]string
	// Files are extra entries: zip path -> local file.
	Files map[string]string
	// WhatsNew is the Markdown shown to the admin.
	WhatsNew       string
	MinHostVersion string
	// Released defaults to today (UTC).
	Released string
	// OutDir receives <id>-<version>.zip; the current directory when empty.
	OutDir string
	// Key, when set, signs the manifest.
	Key ed25519.PrivateKey
}

// Build writes <id>-<version>.zip: pack.json with the sha256 of every file,
// bin/<id>-<os>-<arch> for each binary, the extra files, and pack.json.sig
// when a key is given. The manifest's db_changes list every step of every
// table's history; reports show the ones newer than the installed manifest.
func Build(ctx context.Context, l *packs.Launcher, o BuildOptions) (string, *manifest.Manifest, error) {
	p, err := l.StartBinary(ctx, o.Binary)
	if err != nil {
		return "", nil, fmt.Errorf("build: describe %s: %w", o.Binary, err)
	}
	info := p.Info
	p.Stop()
	m := &manifest.Manifest{
		ID:             info.Id,
		Version:        info.Version,
		MinHostVersion: o.MinHostVersion,
		Released:       o.Released,
		Description:    info.Description,
		WhatsNew:       o.WhatsNew,
		DependsOn:      info.DependsOn,
		Reads:          info.Reads,
		Binaries:       map[string]manifest.Binary{},
	}
	if m.Released == "" {
		m.Released = time.Now().UTC().Format("2006-01-02")
	}
	for _, t := range info.Tables {
		for _, st := range t.Steps {
			m.DBChanges = append(m.DBChanges, manifest.DBChange{
				Table: t.Name, From: int(st.To) - 1, To: int(st.To), Summary: st.Summary, Destructive: st.Destructive,
			})
		}
	}
	sources := map[string]string{} // zip path -> local file
	bins := map[string]string{manifest.Platform(): o.Binary}
	for plat, path := range o.Others {
		if _, dup := bins[plat]; dup {
			return "", nil, fmt.Errorf("build: two binaries for %s", plat)
		}
		bins[plat] = path
	}
	for plat, path := range bins {
		zp := fmt.Sprintf("bin/%s-%s", m.ID, strings.ReplaceAll(plat, "/", "-"))
		sum, err := packs.FileSHA256(path)
		if err != nil {
			return "", nil, fmt.Errorf("build: %w", err)
		}
		m.Binaries[plat] = manifest.Binary{Path: zp, SHA256: sum}
		sources[zp] = path
	}
	for zp, path := range o.Files {
		if _, dup := sources[zp]; dup {
			return "", nil, fmt.Errorf("build: %s is both a binary and a file", zp)
		}
		sum, err := packs.FileSHA256(path)
		if err != nil {
			return "", nil, fmt.Errorf("build: %w", err)
		}
		if m.Files == nil {
			m.Files = map[string]string{}
		}
		m.Files[zp] = sum
		sources[zp] = path
	}
	if err := m.Validate(); err != nil {
		return "", nil, fmt.Errorf("build: %w", err)
	}
	data, err := m.Marshal()
	if err != nil {
		return "", nil, fmt.Errorf("build: %w", err)
	}
	outDir := o.OutDir
	if outDir == "" {
		outDir = "."
	}
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		return "", nil, fmt.Errorf("build: %w", err)
	}
	out := filepath.Join(outDir, fmt.Sprintf("%s-%s.zip", m.ID, m.Version))
	err = writeZipAtomic(out, func(zw *zip.Writer) error {
		if err := addBytes(zw, manifest.FileName, data, 0o644); err != nil {
			return err
		}
		if o.Key != nil {
			if err := addBytes(zw, SigFileName, trust.SignManifest(o.Key, data), 0o644); err != nil {
				return err
			}
		}
		for _, zp := range sortedKeys(sources) {
			mode := os.FileMode(0o644)
			if strings.HasPrefix(zp, "bin/") {
				mode = 0o755
			}
			if err := addFile(zw, zp, sources[zp], mode); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return "", nil, fmt.Errorf("build %s: %w", out, err)
	}
	return out, m, nil
}

// Sign adds (or replaces) pack.json.sig in the zip at zipPath. The other
// entries are copied as they are, compressed bytes included.
func Sign(zipPath string, key ed25519.PrivateKey) error {
	zr, err := zip.OpenReader(zipPath)
	if err != nil {
		return fmt.Errorf("sign %s: %w", zipPath, err)
	}
	defer zr.Close()
	var mf *zip.File
	for _, f := range zr.File {
		if f.Name == manifest.FileName {
			mf = f
		}
	}
	if mf == nil {
		return fmt.Errorf("sign %s: no %s in the zip", zipPath, manifest.FileName)
	}
	data, err := readEntry(mf, maxManifestSize)
	if err != nil {
		return fmt.Errorf("sign %s: read %s: %w", zipPath, manifest.FileName, err)
	}
	if _, err := manifest.Parse(data); err != nil {
		return fmt.Errorf("sign %s: %w", zipPath, err)
	}
	err = writeZipAtomic(zipPath, func(zw *zip.Writer) error {
		for _, f := range zr.File {
			if f.Name == SigFileName {
				continue
			}
			if err := zw.Copy(f); err != nil {
				return err
			}
			if f.Name == manifest.FileName {
				if err := addBytes(zw, SigFileName, trust.SignManifest(key, data), 0o644); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("sign %s: %w", zipPath, err)
	}
	return nil
}

// writeZipAtomic writes a zip beside path and renames it into place.
func writeZipAtomic(path string, fill func(*zip.Writer) error) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	zw := zip.NewWriter(tmp)
	if err := fill(zw); err != nil {
		tmp.Close()
		return err
	}
	if err := zw.Close(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

func addBytes(zw *zip.Writer, name string, data []byte, mode os.FileMode) error {
	h := &zip.FileHeader{Name: name, Method: zip.Deflate}
	h.SetMode(mode)
	w, err := zw.CreateHeader(h)
	if err != nil {
		return err
	}
	_, err = w.Write(data)
	return err
}

func addFile(zw *zip.Writer, name, src string, mode os.FileMode) error {
	f, err := os.Open(src)
	if err != nil {
		return err
	}
	defer f.Close()
	h := &zip.FileHeader{Name: name, Method: zip.Deflate}
	h.SetMode(mode)
	w, err := zw.CreateHeader(h)
	if err != nil {
		return err
	}
	_, err = io.Copy(w, f)
	return err
}
