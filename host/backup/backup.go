// Package backup is the host's side of database backups: it names them,
// has each pack write its own (the pack owns the connection and the data;
// see plugins/sdk), makes them appear only when complete, lists them for
// reports and hands one back to its pack to restore.
//
// A backup of pack P taken at time T is the directory
//
//	<root>/Updates_Backups/db-<T as UTC yyyymmddThhmmssZ>-<P>/
//
// in the layout of internal/backupfile; a second backup of P within the
// same second is db-<T>.2-<P>, a third db-<T>.3-<P>, and so on (the
// number goes before the pack id, which may itself end in -<digits>).
// The lifecycle of one backup:
//
//  1. The host claims the first free name N by making the hidden
//     directory .N.partial (0700) next to where the backup goes.
//  2. The pack writes every file into it (0600), manifest last, streaming
//     progress.
//  3. On success the host syncs and renames it to db-<T>-<P>. On any
//     failure (the pack's error, a cancelled context, a pack that died)
//     the partial directory is removed: there is never half a backup under
//     a backup's name, and the caller upgrades nothing.
package backup

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/packhost/packhost/host/packs"
	"github.com/packhost/packhost/internal/backupfile"
	"github.com/packhost/packhost/internal/naming"
	"github.com/packhost/packhost/internal/packpb"
)

// Prefix starts the name of every database backup directory.
const Prefix = "db-"

// Name is the directory name of pack's first backup taken at at.
func Name(at time.Time, packID string) string {
	return NameN(at, packID, 1)
}

// NameN is the directory name of pack's n-th backup taken within the
// second of at: Name for n 1, db-<T>.<n>-<pack> after.
func NameN(at time.Time, packID string, n int) string {
	seq := ""
	if n > 1 {
		seq = "." + strconv.Itoa(n)
	}
	return Prefix + naming.Stamp(at) + seq + "-" + packID
}

// maxPerSecond bounds the backups of one pack within one second.
const maxPerSecond = 99

var namePattern = regexp.MustCompile(`^db-(` + naming.StampExpr + `)(?:\.([1-9]\d?))?-(` + naming.PackIDExpr + `)$`)

var partialPattern = regexp.MustCompile(`^\.db-` + naming.StampExpr + `(?:\.[1-9]\d?)?-` + naming.PackIDExpr + `\.partial$`)

// IsPartial reports whether name is that of a backup being written (see
// the lifecycle above); one that a killed host left may be removed.
func IsPartial(name string) bool { return partialPattern.MatchString(name) }

// ParseName reads a backup directory's name: the time it was taken, its
// number within that second (1 for the first) and the pack id. ok is
// false for a name that is not a backup's.
func ParseName(name string) (at time.Time, n int, packID string, ok bool) {
	mm := namePattern.FindStringSubmatch(name)
	if mm == nil {
		return time.Time{}, 0, "", false
	}
	at, err := naming.ParseStamp(mm[1])
	if err != nil {
		return time.Time{}, 0, "", false
	}
	n = 1
	if mm[2] != "" {
		n, _ = strconv.Atoi(mm[2])
	}
	return at, n, mm[3], true
}

// Progress receives a pack's progress events during a backup or restore.
type Progress func(packID string, ev *packpb.Progress)

// ErrExists is returned by Pack when every name for a backup of the pack
// within that second is taken (more than 99 backups of it in one second);
// the caller waits a second and tries again.
var ErrExists = errors.New("a backup with this name already exists")

// Pack backs up p's tables (all of them when tables is empty) into dir (the
// system's Updates_Backups) and returns the backup's path. dir is created
// when missing. A backup of p taken in the same second before gets the
// next free name (see NameN).
func Pack(ctx context.Context, dir string, p *packs.Pack, at time.Time, tables []string, progress Progress) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("back up pack %s: %w", p.ID, err)
	}
	final, partial, err := claim(dir, at, p.ID)
	if err != nil {
		return "", fmt.Errorf("back up pack %s: %w", p.ID, err)
	}
	done := false
	defer func() {
		if !done {
			_ = os.RemoveAll(partial)
		}
	}()
	req := &packpb.BackupRequest{Dir: partial, CreatedAt: naming.Stamp(at), Tables: tables}
	err = p.Backup(ctx, req, func(ev *packpb.Progress) {
		if progress != nil {
			progress(p.ID, ev)
		}
	})
	if err != nil {
		return "", fmt.Errorf("back up pack %s: %w; no backup was kept", p.ID, err)
	}
	// The pack said it is done; check that it left a complete backup before
	// giving it its name.
	m, err := backupfile.ReadManifest(partial)
	if err == nil {
		err = backupfile.VerifyFiles(partial, m)
	}
	if err == nil && m.PackID != p.ID {
		err = fmt.Errorf("the manifest names pack %q", m.PackID)
	}
	if err != nil {
		return "", fmt.Errorf("back up pack %s: the pack's backup does not check out: %w; no backup was kept", p.ID, err)
	}
	if err := os.Rename(partial, final); err != nil {
		return "", fmt.Errorf("back up pack %s: %w; no backup was kept", p.ID, err)
	}
	if err := backupfile.SyncDir(dir); err != nil {
		return "", fmt.Errorf("back up pack %s: %w", p.ID, err)
	}
	done = true
	return final, nil
}

// claim makes the partial directory of the first backup name of packID
// at at that is free, and returns the final and the partial paths. Making
// the partial directory is the claim: two hosts backing up at once never
// get one name.
func claim(dir string, at time.Time, packID string) (final, partial string, err error) {
	for n := 1; n <= maxPerSecond; n++ {
		name := NameN(at, packID, n)
		final = filepath.Join(dir, name)
		if _, err := os.Lstat(final); err == nil {
			continue
		}
		partial = filepath.Join(dir, "."+name+".partial")
		err := os.Mkdir(partial, backupfile.DirMode)
		if errors.Is(err, os.ErrExist) {
			continue
		}
		if err != nil {
			return "", "", fmt.Errorf("make %s: %w", partial, err)
		}
		return final, partial, nil
	}
	return "", "", fmt.Errorf("%s: %w (%d backups of it in one second); wait a second and try again", Name(at, packID), ErrExists, maxPerSecond)
}

// Packs backs up each pack in list, in order, with one timestamp, and
// returns the backups' paths. It stops at the first failure; the backups
// made before it are complete and kept.
func Packs(ctx context.Context, dir string, list []*packs.Pack, at time.Time, progress Progress) ([]string, error) {
	var paths []string
	for _, p := range list {
		path, err := Pack(ctx, dir, p, at, nil, progress)
		if err != nil {
			return paths, err
		}
		paths = append(paths, path)
	}
	return paths, nil
}

// Resolve finds the backup a user named: a path (absolute or relative to
// the working directory), or the name of a directory in dir.
func Resolve(dir, arg string) (string, error) {
	if fi, err := os.Stat(arg); err == nil && fi.IsDir() {
		return filepath.Abs(arg)
	}
	if !strings.ContainsRune(arg, filepath.Separator) {
		p := filepath.Join(dir, arg)
		if fi, err := os.Stat(p); err == nil && fi.IsDir() {
			return filepath.Abs(p)
		}
	}
	return "", fmt.Errorf("%s: no such backup directory (give its path, or its name in %s)", arg, dir)
}

// Restore verifies the backup at path and restores it into the database
// through the pack it belongs to, which must be running. A damaged backup
// is refused (errors.Is(err, packerr.ErrBackupInvalid)) and nothing changes.
func Restore(ctx context.Context, list []*packs.Pack, path string, verifyOnly bool, progress Progress) (*backupfile.Manifest, error) {
	return RestoreWith(ctx, list, path, RestoreOptions{VerifyOnly: verifyOnly}, progress)
}

// RestoreOptions says how a backup is restored.
type RestoreOptions struct {
	// VerifyOnly checks the backup and changes nothing.
	VerifyOnly bool
	// AsItWas puts the tables back exactly as the backup holds them, from
	// their recorded definitions, even a table newer than the running
	// code (an install's rollback, a backup the operator chose in `host
	// recover`); otherwise such a backup is refused.
	AsItWas bool
}

// RestoreWith is Restore with options.
func RestoreWith(ctx context.Context, list []*packs.Pack, path string, o RestoreOptions, progress Progress) (*backupfile.Manifest, error) {
	m, err := backupfile.ReadManifest(path)
	if err != nil {
		return nil, fmt.Errorf("restore %s: %w", path, err)
	}
	var p *packs.Pack
	for _, x := range list {
		if x.ID == m.PackID {
			p = x
		}
	}
	if p == nil {
		return nil, fmt.Errorf("restore %s: it is a backup of pack %s, which is not installed or did not start; install the pack (at version %s or later) first",
			path, m.PackID, m.PackVer)
	}
	err = p.Restore(ctx, &packpb.RestoreRequest{Dir: path, VerifyOnly: o.VerifyOnly, AsItWas: o.AsItWas}, func(ev *packpb.Progress) {
		if progress != nil {
			progress(p.ID, ev)
		}
	})
	if err != nil {
		return nil, fmt.Errorf("restore pack %s: %w", p.ID, err)
	}
	return m, nil
}

// Info describes one backup for reports.
type Info struct {
	Path      string      `json:"path"`
	Name      string      `json:"name"`
	PackID    string      `json:"pack_id"`
	PackVer   string      `json:"pack_version,omitempty"`
	CreatedAt time.Time   `json:"created_at"`
	Tables    []TableInfo `json:"tables,omitempty"`
	// Size is the total size of the backup's files in bytes.
	Size int64 `json:"size"`
	// Problem says why the backup cannot be read (no or bad manifest);
	// empty for a readable one. Checksums are not verified here.
	Problem string `json:"problem,omitempty"`
}

// TableInfo is one table of a backup.
type TableInfo struct {
	Name    string `json:"name"`
	Version int    `json:"version"`
	Rows    int64  `json:"rows"`
}

// List returns the database backups in dir, newest first. A missing dir
// has none.
func List(dir string) ([]Info, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list backups: %w", err)
	}
	var out []Info
	seq := map[string]int{}
	for _, e := range entries {
		at, n, packID, ok := ParseName(e.Name())
		if !e.IsDir() || !ok {
			continue
		}
		seq[e.Name()] = n
		info := Info{Path: filepath.Join(dir, e.Name()), Name: e.Name(), PackID: packID, CreatedAt: at}
		m, err := backupfile.ReadManifest(info.Path)
		if err != nil {
			info.Problem = strings.Replace(err.Error(), backupfile.ErrInvalid.Error()+": ", "", 1)
		} else {
			info.PackVer = m.PackVer
			for _, t := range m.Tables {
				info.Tables = append(info.Tables, TableInfo{Name: t.Name, Version: t.Version, Rows: t.Rows})
			}
			for _, f := range m.Files {
				info.Size += f.Size
			}
		}
		out = append(out, info)
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].CreatedAt.Equal(out[j].CreatedAt) {
			return out[i].CreatedAt.After(out[j].CreatedAt)
		}
		if out[i].PackID != out[j].PackID {
			return out[i].PackID < out[j].PackID
		}
		return seq[out[i].Name] > seq[out[j].Name]
	})
	return out, nil
}
