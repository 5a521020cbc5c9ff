package recovery

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/packhost/packhost/host/backup"
	"github.com/packhost/packhost/host/manifest"
	"github.com/packhost/packhost/host/packs"
	"github.com/packhost/packhost/host/system"
	"github.com/packhost/packhost/internal/backupfile"
	"github.com/packhost/packhost/internal/naming"
)

// Situation is what is on disk around an install journal, for the
// operator choosing a way out (`host recover`). Reading it changes
// nothing.
type Situation struct {
	// Journal is nil when the journal cannot be read; ReadErr says why.
	Journal *Journal
	ReadErr error
	// Files are facts about the pack directories, zips and backups the
	// journal names, one line each.
	Files []string
}

// Describe reads the journal of root and looks at what it names.
func Describe(root string) (*Situation, bool) {
	if _, err := os.Stat(Path(root)); errors.Is(err, os.ErrNotExist) {
		return nil, false
	}
	s := &Situation{}
	s.Journal, s.ReadErr = Read(root)
	j := s.Journal
	if j == nil {
		return s, true
	}
	packsDir := filepath.Join(root, packs.Dir)
	for _, e := range j.Packs {
		s.Files = append(s.Files, "packs/"+e.ID+": "+installedVersion(filepath.Join(packsDir, e.ID)))
		for _, d := range []string{e.Stage, e.Old} {
			if _, err := os.Stat(filepath.Join(packsDir, d)); err == nil {
				s.Files = append(s.Files, "packs/"+d+": "+installedVersion(filepath.Join(packsDir, d)))
			}
		}
		zip := filepath.Join(system.PendingDir, e.Zip)
		if _, err := os.Stat(filepath.Join(root, zip)); err == nil {
			s.Files = append(s.Files, zip+": present")
		} else {
			s.Files = append(s.Files, zip+": absent (moved to "+system.InstalledDir+" if the install committed)")
		}
	}
	if j.SystemBackup != "" {
		p := filepath.Join(root, system.BackupsDir, filepath.Base(j.SystemBackup))
		if fi, err := os.Stat(p); err == nil {
			s.Files = append(s.Files, fmt.Sprintf("%s/%s: present (%d bytes)", system.BackupsDir, filepath.Base(p), fi.Size()))
		} else {
			s.Files = append(s.Files, system.BackupsDir+"/"+filepath.Base(p)+": missing")
		}
	}
	for _, name := range backupNames(j) {
		p := filepath.Join(root, system.BackupsDir, name)
		m, err := backupfile.ReadManifest(p)
		if err != nil {
			s.Files = append(s.Files, fmt.Sprintf("%s/%s: cannot be used: %v", system.BackupsDir, name, err))
			continue
		}
		var tables []string
		for _, t := range m.Tables {
			tables = append(tables, fmt.Sprintf("%s v%d, %d rows", t.Name, t.Version, t.Rows))
		}
		s.Files = append(s.Files, fmt.Sprintf("%s/%s: backup of pack %s %s (%s)", system.BackupsDir, name, m.PackID, m.PackVer, strings.Join(tables, "; ")))
	}
	return s, true
}

func installedVersion(dir string) string {
	if _, err := os.Stat(dir); err != nil {
		return "absent"
	}
	m, err := manifest.Load(filepath.Join(dir, manifest.FileName))
	if err != nil {
		return "present, no readable manifest"
	}
	return "version " + m.Version
}

// backupNames are the database backup directories the journal's token
// names.
func backupNames(j *Journal) []string {
	if j.DBBackup == "" {
		return nil
	}
	var out []string
	for _, name := range strings.Split(j.DBBackup, ",") {
		if _, err := naming.ParseStamp(name); err == nil {
			for _, id := range j.RestoreIDs() {
				out = append(out, backup.Prefix+name+"-"+id)
			}
			continue
		}
		out = append(out, name)
	}
	return out
}

// KeepCurrent ends an install without finishing or undoing it: each
// pack's directory stays as it is now (its old version is put back only
// where the pack has none, half-way through a swap), left-over staged and
// old directories go, the tables are left as they are, and the journal is
// set aside in Updates_Backups (install-journal-<stamp>.json) for the
// record; a journal that cannot be read is set aside all the same. The
// zips stay where they are. The caller holds the system's write lock.
func KeepCurrent(root string) (setAside string, kept []string, err error) {
	j, rerr := Read(root)
	if j != nil {
		packsDir := filepath.Join(root, packs.Dir)
		for _, e := range j.Packs {
			final := filepath.Join(packsDir, e.ID)
			old := filepath.Join(packsDir, e.Old)
			if _, err := os.Stat(final); errors.Is(err, os.ErrNotExist) {
				if _, err := os.Stat(old); err == nil {
					if err := os.Rename(old, final); err != nil {
						return "", kept, err
					}
				}
			}
			for _, d := range []string{e.Stage, e.Old} {
				if err := os.RemoveAll(filepath.Join(packsDir, d)); err != nil {
					return "", kept, err
				}
			}
			kept = append(kept, "pack "+e.ID+": "+installedVersion(final))
		}
		if err := backupfile.SyncDir(packsDir); err != nil {
			return "", kept, err
		}
	} else if rerr == nil {
		return "", nil, errors.New("there is no install journal: nothing to keep")
	}
	dir := filepath.Join(root, system.BackupsDir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", kept, err
	}
	setAside = filepath.Join(dir, "install-journal-"+naming.Stamp(time.Now())+".json")
	if err := os.Rename(Path(root), setAside); err != nil {
		return "", kept, fmt.Errorf("set the journal aside: %w", err)
	}
	return setAside, kept, backupfile.SyncDir(root)
}

// UndoFilesOnly puts every pack of the journal back to its old version
// (the first half of undoing an install), for a restore from backups the
// operator chose. The journal moves to StateRestoreDB.
func UndoFilesOnly(root string) (*Journal, error) {
	j, err := Read(root)
	if err != nil {
		return nil, err
	}
	if j == nil {
		return nil, errors.New("there is no install journal")
	}
	packsDir := filepath.Join(root, packs.Dir)
	for _, e := range j.Packs {
		if err := UndoFiles(packsDir, e); err != nil {
			return j, fmt.Errorf("put back pack %s: %w", e.ID, err)
		}
	}
	return j, j.SetState(root, StateRestoreDB)
}

// ProtectedBackups are the names in Updates_Backups that the journal of
// root names (its system backup and database backups): pruning never
// removes them while the journal is there.
func ProtectedBackups(root string) map[string]bool {
	out := map[string]bool{}
	j, err := Read(root)
	if err != nil || j == nil {
		return out
	}
	if j.SystemBackup != "" {
		out[filepath.Base(j.SystemBackup)] = true
	}
	for _, n := range backupNames(j) {
		out[n] = true
	}
	return out
}
