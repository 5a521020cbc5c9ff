// Package backupfile is the on-disk format of a database backup, shared by
// the pack that writes and reads it (plugins/sdk) and the host that names,
// lists and hands it over (host/backup).
//
// A backup is one directory:
//
//	manifest.json            what is in the backup, with a sha256 per file
//	<table>.schema.txt       canonical schema text of the table (internal/schema)
//	<table>.rows.zst         every row, zstd-compressed (encoding per dialect)
//	pack_settings.json       the pack's pack_settings rows
//	schema_registry.json     the schema_registry rows of the pack's tables
//
// The manifest is written last: a directory without one is not a backup.
// Files are readable by their owner only (0600, directory 0700): they hold
// user data.
package backupfile

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/packhost/packhost/internal/schema"
)

// Format names this layout; a reader refuses other values but
// FormatV1's.
const Format = "packhost-db-backup/2"

// FormatV1 is the first layout: the same without each table's Definition,
// so that such a backup is restored by rebuilding its tables with the
// pack's own steps.
const FormatV1 = "packhost-db-backup/1"

// File names inside a backup directory.
const (
	ManifestFile = "manifest.json"
	SettingsFile = "pack_settings.json"
	RegistryFile = "schema_registry.json"
)

// Permissions of what a backup writes.
const (
	DirMode  os.FileMode = 0o700
	FileMode os.FileMode = 0o600
)

// Row encodings.
const (
	// EncodingPGText is PostgreSQL's COPY text format (one row per line,
	// tab-separated, \N for NULL), the same format pg_dump writes.
	EncodingPGText = "pg-copy-text"
	// EncodingSQLiteValues is the SQLite value stream of plugins/sdk: per
	// row, per column, a type tag and the value as stored (integer, real,
	// text, blob or NULL), then one end byte.
	EncodingSQLiteValues = "sqlite-values/1"
)

// Compression of the rows files.
const CompressionZstd = "zstd"

// Manifest describes one pack's backup.
type Manifest struct {
	Format     string `json:"format"`
	PackID     string `json:"pack_id"`
	PackVer    string `json:"pack_version"`
	SDKVersion string `json:"sdk_version"`
	// Dialect is the database the backup was taken from: sqlite or postgres.
	Dialect string `json:"dialect"`
	// CreatedAt is the host's UTC timestamp for the backup (yyyymmddThhmmssZ).
	CreatedAt string `json:"created_at"`
	// Tables are the backed-up tables, in the pack's order.
	Tables []Table `json:"tables"`
	// Skipped lists the requested tables that were not installed (version
	// 0) and so hold nothing; a restore leaves them alone.
	Skipped []string `json:"skipped,omitempty"`
	// SettingsRows and RegistryRows count the rows in SettingsFile and
	// RegistryFile.
	SettingsRows int `json:"settings_rows"`
	RegistryRows int `json:"registry_rows"`
	// Files maps every file of the backup but the manifest to its size and
	// sha256.
	Files map[string]FileSum `json:"files"`
}

// Table is one backed-up table.
type Table struct {
	Name string `json:"name"`
	// Version is the table's installed version at the time of the backup.
	Version int `json:"version"`
	// Columns are the columns in the order the rows file holds them.
	Columns     []string `json:"columns"`
	Rows        int64    `json:"rows"`
	SchemaFile  string   `json:"schema_file"`
	RowsFile    string   `json:"rows_file"`
	Encoding    string   `json:"encoding"`
	Compression string   `json:"compression"`
	// Sequences hold the state of the sequences behind the table's columns
	// (PostgreSQL serial and identity columns, SQLite AUTOINCREMENT).
	Sequences []Sequence `json:"sequences,omitempty"`
	// Definition is the SQL that makes the table again as it was backed
	// up (absent in FormatV1: such a table is rebuilt with the pack's
	// steps).
	Definition *schema.Definition `json:"definition,omitempty"`
}

// Sequence is the state of one column's sequence.
type Sequence struct {
	Column    string `json:"column"`
	LastValue int64  `json:"last_value"`
	IsCalled  bool   `json:"is_called"`
}

// FileSum is the size and sha256 (hex) of one file.
type FileSum struct {
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// Setting is one pack_settings row as stored in SettingsFile.
type Setting struct {
	PackID    string    `json:"pack_id"`
	Key       string    `json:"key"`
	Value     string    `json:"value"`
	UpdatedAt time.Time `json:"updated_at"`
}

// Registration is one schema_registry row as stored in RegistryFile.
type Registration struct {
	TableName    string    `json:"table_name"`
	TableVersion int       `json:"table_version"`
	PackID       string    `json:"pack_id"`
	SchemaText   string    `json:"schema_text"`
	CreatedAt    time.Time `json:"created_at"`
}

// SchemaFileName and RowsFileName name a table's files.
func SchemaFileName(table string) string { return table + ".schema.txt" }

// RowsFileName names a table's rows file.
func RowsFileName(table string) string { return table + ".rows.zst" }

// ErrInvalid marks a backup that fails verification. Callers map it to the
// ErrBackupInvalid sentinel that crosses the process boundary.
var ErrInvalid = errors.New("backup failed verification")

func invalid(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, a...))
}

// ReadManifest reads and checks the manifest of the backup in dir: the
// format, and that every file it names is listed with a checksum. It does
// not read the other files; Verify does.
func ReadManifest(dir string) (*Manifest, error) {
	b, err := os.ReadFile(filepath.Join(dir, ManifestFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, invalid("%s has no %s; it is not a database backup, or the backup did not finish", dir, ManifestFile)
	}
	if err != nil {
		return nil, fmt.Errorf("read backup manifest: %w", err)
	}
	var m Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, invalid("%s: not valid JSON: %v", ManifestFile, err)
	}
	if m.Format != Format && m.Format != FormatV1 {
		return nil, invalid("%s: format %q, expected %q", ManifestFile, m.Format, Format)
	}
	if m.PackID == "" {
		return nil, invalid("%s: no pack_id", ManifestFile)
	}
	need := []string{SettingsFile, RegistryFile}
	seen := map[string]bool{}
	for _, t := range m.Tables {
		if t.Name == "" || seen[t.Name] {
			return nil, invalid("%s: table %q is empty or listed twice", ManifestFile, t.Name)
		}
		seen[t.Name] = true
		if t.SchemaFile != SchemaFileName(t.Name) || t.RowsFile != RowsFileName(t.Name) {
			return nil, invalid("%s: table %s: unexpected file names %q, %q", ManifestFile, t.Name, t.SchemaFile, t.RowsFile)
		}
		if t.Version < 1 || t.Rows < 0 || len(t.Columns) == 0 {
			return nil, invalid("%s: table %s: version %d, %d rows, %d columns: not a possible table", ManifestFile, t.Name, t.Version, t.Rows, len(t.Columns))
		}
		if t.Definition != nil && len(t.Definition.Create) == 0 {
			return nil, invalid("%s: table %s has an empty definition", ManifestFile, t.Name)
		}
		if t.Compression != CompressionZstd {
			return nil, invalid("%s: table %s: unknown compression %q", ManifestFile, t.Name, t.Compression)
		}
		need = append(need, t.SchemaFile, t.RowsFile)
	}
	for _, f := range need {
		if _, ok := m.Files[f]; !ok {
			return nil, invalid("%s lists no checksum for %s", ManifestFile, f)
		}
	}
	return &m, nil
}

// VerifyFiles checks that every file the manifest lists is present with its
// size and sha256. It reads each file once.
func VerifyFiles(dir string, m *Manifest) error {
	names := make([]string, 0, len(m.Files))
	for n := range m.Files {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		want := m.Files[n]
		if n != filepath.Base(n) || strings.HasPrefix(n, ".") {
			return invalid("%s names an unsafe file %q", ManifestFile, n)
		}
		got, err := SumFile(filepath.Join(dir, n))
		if errors.Is(err, os.ErrNotExist) {
			return invalid("%s is missing (listed in %s)", n, ManifestFile)
		}
		if err != nil {
			return fmt.Errorf("verify %s: %w", n, err)
		}
		if got.Size != want.Size {
			return invalid("%s: size %d bytes, manifest says %d", n, got.Size, want.Size)
		}
		if got.SHA256 != want.SHA256 {
			return invalid("%s: sha256 mismatch (manifest %s, file %s)", n, short(want.SHA256), short(got.SHA256))
		}
	}
	return nil
}

func short(h string) string {
	if len(h) > 12 {
		return h[:12] + "..."
	}
	return h
}

// SumFile returns the size and sha256 of a file.
func SumFile(path string) (FileSum, error) {
	f, err := os.Open(path)
	if err != nil {
		return FileSum{}, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return FileSum{}, err
	}
	return FileSum{Size: n, SHA256: hex.EncodeToString(h.Sum(nil))}, nil
}

// Writer creates one file of a backup, hashing what goes through it.
type Writer struct {
	f    *os.File
	h    hash.Hash
	n    int64
	name string
}

// Create makes a new file in dir (0600, failing when it exists).
func Create(dir, name string) (*Writer, error) {
	f, err := os.OpenFile(filepath.Join(dir, name), os.O_WRONLY|os.O_CREATE|os.O_EXCL, FileMode)
	if err != nil {
		return nil, err
	}
	return &Writer{f: f, h: sha256.New(), name: name}, nil
}

func (w *Writer) Write(p []byte) (int, error) {
	n, err := w.f.Write(p)
	w.h.Write(p[:n])
	w.n += int64(n)
	return n, err
}

// Close syncs and closes the file and records its checksum in m.
func (w *Writer) Close(m *Manifest) error {
	if err := w.f.Sync(); err != nil {
		w.f.Close()
		return fmt.Errorf("write %s: %w", w.name, err)
	}
	if err := w.f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", w.name, err)
	}
	if m.Files == nil {
		m.Files = map[string]FileSum{}
	}
	m.Files[w.name] = FileSum{Size: w.n, SHA256: hex.EncodeToString(w.h.Sum(nil))}
	return nil
}

// Abort closes the file without recording it.
func (w *Writer) Abort() { _ = w.f.Close() }

// WriteJSON writes v as an indented JSON file of the backup and records it.
func WriteJSON(dir, name string, v any, m *Manifest) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("encode %s: %w", name, err)
	}
	return WriteFile(dir, name, append(b, '\n'), m)
}

// WriteFile writes a small file of the backup and records it.
func WriteFile(dir, name string, data []byte, m *Manifest) error {
	w, err := Create(dir, name)
	if err != nil {
		return err
	}
	if _, err := w.Write(data); err != nil {
		w.Abort()
		return fmt.Errorf("write %s: %w", name, err)
	}
	return w.Close(m)
}

// WriteManifest writes the manifest, last, and syncs the directory.
func WriteManifest(dir string, m *Manifest) error {
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return fmt.Errorf("encode manifest: %w", err)
	}
	path := filepath.Join(dir, ManifestFile)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, FileMode)
	if err != nil {
		return fmt.Errorf("write manifest: %w", err)
	}
	if _, err := f.Write(append(b, '\n')); err != nil {
		f.Close()
		return fmt.Errorf("write manifest: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("write manifest: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write manifest: %w", err)
	}
	return SyncDir(dir)
}

// SyncDir flushes a directory's entries to disk.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}

// ReadJSON reads a JSON file of the backup (already verified) into v.
func ReadJSON(dir, name string, v any) error {
	b, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		return fmt.Errorf("read %s: %w", name, err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return invalid("%s: not valid JSON: %v", name, err)
	}
	return nil
}
