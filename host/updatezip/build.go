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
	"github.com/packhost/packhost/internal/dbconn"
)

// BuildOptions says what goes into an update zip.
type BuildOptions struct {
	// Binary is the pack executable for this machine's platform; Build
	// starts it and asks it to Describe itself (id, version, tables) and
	// for its tables' history.
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
	// Launch says how the binary is started (timeout, logger); its
	// database is set from PostgresDSN.
	Launch packs.Config
	// PostgresDSN, when set, is a PostgreSQL database the pack's steps
	// are replayed on, in a scratch schema that is rolled back, so that
	// the PostgreSQL history is recorded too. SQLite's always is.
	PostgresDSN string
	// Previous are earlier releases of the pack (update zips, pack.json
	// files, or folders of them): a build whose schema at a version they
	// released differs is refused.
	Previous []string
}

// BuildResult is what Build wrote and checked.
type BuildResult struct {
	Path     string
	Manifest *manifest.Manifest
	// Previous are the earlier releases the history was checked against.
	Previous []Release
	// Notes say what the build could not record or check, for its output.
	Notes []string
}

// Build writes <id>-<version>.zip: pack.json with the sha256 of every file,
// bin/<id>-<os>-<arch> for each binary, the extra files, and pack.json.sig
// when a key is given.
//
//  1. Start the binary: Describe, then History (SQLite always, PostgreSQL
//     with PostgresDSN).
//  2. The manifest: db_changes list every step of every table's history
//     (reports show the ones newer than the installed manifest), each
//     with its lint findings; history holds every version's schema.
//  3. Refuse a table whose Create makes another schema than its last
//     step, a step with a destructive finding that is not marked
//     Destructive, and a schema at a version an earlier release (Previous)
//     recorded that this build makes differently.
//  4. Write the zip beside its final name and rename it into place.
func Build(ctx context.Context, o BuildOptions) (*BuildResult, error) {
	res := &BuildResult{}
	info, h, dialects, err := describeBinary(ctx, o)
	if err != nil {
		return nil, err
	}
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
	if m.History, err = manifestHistory(info, h, dialects); err != nil {
		return nil, fmt.Errorf("build %s %s: %w", m.ID, m.Version, err)
	}
	if m.DBChanges, err = lintedChanges(info, m.History); err != nil {
		return nil, fmt.Errorf("build %s %s: %w", m.ID, m.Version, err)
	}
	if err := unmarkedDestructive(m); err != nil {
		return nil, fmt.Errorf("build %s %s: %w", m.ID, m.Version, err)
	}
	if !m.History.Has(dbconn.Postgres) {
		res.Notes = append(res.Notes, NoPostgresHistory)
	}
	if len(o.Previous) > 0 {
		prev, notes, err := checkPrevious(m, o.Previous)
		if err != nil {
			return nil, err
		}
		res.Previous, res.Notes = prev, append(res.Notes, notes...)
	}
	if err := addFiles(m, o); err != nil {
		return nil, err
	}
	res.Path, err = writeBuild(m, o)
	if err != nil {
		return nil, err
	}
	res.Manifest = m
	return res, nil
}

// NoPostgresHistory is Build's note for a zip built without a PostgreSQL
// server; the installer's counterpart is in CheckDatabase.
const NoPostgresHistory = "the PostgreSQL history was not recorded (no server was given: --pg-dsn or " + EnvBuildPostgres + "): " +
	"on a PostgreSQL site the host cannot compare this release's history with the database before the install; " +
	"the new version checks its own steps against the database when it upgrades, after the backup, and a changed history then stops the install and rolls it back"

// EnvBuildPostgres names the PostgreSQL server `host pack build` records
// the PostgreSQL history on, when --pg-dsn is not given.
const EnvBuildPostgres = "PACKHOST_BUILD_PG_DSN"

// addFiles lists the binaries and extra files in the manifest with their
// sums.
func addFiles(m *manifest.Manifest, o BuildOptions) error {
	bins := map[string]string{manifest.Platform(): o.Binary}
	for plat, path := range o.Others {
		if _, dup := bins[plat]; dup {
			return fmt.Errorf("build: two binaries for %s", plat)
		}
		bins[plat] = path
	}
	for plat, path := range bins {
		sum, err := packs.FileSHA256(path)
		if err != nil {
			return fmt.Errorf("build: %w", err)
		}
		m.Binaries[plat] = manifest.Binary{Path: binaryPath(m.ID, plat), SHA256: sum}
	}
	for zp, path := range o.Files {
		for _, b := range m.Binaries {
			if b.Path == zp {
				return fmt.Errorf("build: %s is both a binary and a file", zp)
			}
		}
		sum, err := packs.FileSHA256(path)
		if err != nil {
			return fmt.Errorf("build: %w", err)
		}
		if m.Files == nil {
			m.Files = map[string]string{}
		}
		m.Files[zp] = sum
	}
	return m.Validate()
}

func binaryPath(id, plat string) string {
	return fmt.Sprintf("bin/%s-%s", id, strings.ReplaceAll(plat, "/", "-"))
}

// writeBuild writes the zip of m with o's files.
func writeBuild(m *manifest.Manifest, o BuildOptions) (string, error) {
	sources := map[string]string{} // zip path -> local file
	sources[binaryPath(m.ID, manifest.Platform())] = o.Binary
	for plat, path := range o.Others {
		sources[binaryPath(m.ID, plat)] = path
	}
	for zp, path := range o.Files {
		sources[zp] = path
	}
	data, err := m.Marshal()
	if err != nil {
		return "", fmt.Errorf("build: %w", err)
	}
	if len(data) > maxManifestSize {
		return "", fmt.Errorf("build: pack.json would be %d bytes, over the %d a host reads; the history of every version of every table is in it", len(data), maxManifestSize)
	}
	outDir := o.OutDir
	if outDir == "" {
		outDir = "."
	}
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		return "", fmt.Errorf("build: %w", err)
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
		return "", fmt.Errorf("build %s: %w", out, err)
	}
	return out, nil
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
