package recovery

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/packhost/packhost/host/manifest"
	"github.com/packhost/packhost/host/packs"
	"github.com/packhost/packhost/host/system"
	"github.com/packhost/packhost/internal/backupfile"
	"github.com/packhost/packhost/internal/crashpoint"
)

// UndoFiles puts a pack's old directory back and removes the new one. It
// is safe to run again after a crash in the middle of it.
func UndoFiles(packsDir string, e JournalEntry) error {
	final := filepath.Join(packsDir, e.ID)
	old := filepath.Join(packsDir, e.Old)
	if err := os.RemoveAll(filepath.Join(packsDir, e.Stage)); err != nil {
		return err
	}
	_, oldErr := os.Stat(old)
	switch {
	case oldErr == nil:
		// Swapped (or half): whatever is at final is new.
		if err := removeDir(packsDir, final, e); err != nil {
			return err
		}
		if err := os.Rename(old, final); err != nil {
			return err
		}
	case e.OldVersion == "":
		// A new pack: remove it if the swap put it in place.
		if m, err := manifest.Load(filepath.Join(final, manifest.FileName)); err == nil && m.Version == e.Version {
			if err := removeDir(packsDir, final, e); err != nil {
				return err
			}
		}
	}
	return backupfile.SyncDir(packsDir)
}

// removeDir renames dir aside before removing it, so a crash midway leaves
// no half directory under a pack's name.
func removeDir(packsDir, dir string, e JournalEntry) error {
	if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	trash := filepath.Join(packsDir, "."+e.ID+".failed-"+filepath.Base(e.Stage))
	if err := os.RemoveAll(trash); err != nil {
		return err
	}
	if err := os.Rename(dir, trash); err != nil {
		return err
	}
	return os.RemoveAll(trash)
}

// Commit moves the zips to Updates_Installed and removes the old versions
// and the journal. Run again after a crash, it finishes what is left.
func Commit(root string, j *Journal) ([]string, error) {
	dir := filepath.Join(root, system.InstalledDir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	var moved []string
	for i, e := range j.Packs {
		src := filepath.Join(root, system.PendingDir, e.Zip)
		dst := filepath.Join(dir, strings.TrimSuffix(e.Zip, filepath.Ext(e.Zip))+"-"+j.Stamp+".zip")
		if _, err := os.Stat(src); err == nil {
			if err := os.Rename(src, dst); err != nil {
				return moved, fmt.Errorf("move %s to %s: %w", e.Zip, system.InstalledDir, err)
			}
		}
		moved = append(moved, dst)
		if i == 0 {
			crashpoint.At("mid-move")
		}
	}
	if err := backupfile.SyncDir(dir); err != nil {
		return moved, err
	}
	if err := backupfile.SyncDir(filepath.Join(root, system.PendingDir)); err != nil {
		return moved, err
	}
	packsDir := filepath.Join(root, packs.Dir)
	for _, e := range j.Packs {
		if err := os.RemoveAll(filepath.Join(packsDir, e.Old)); err != nil {
			return moved, fmt.Errorf("remove the old version of %s: %w", e.ID, err)
		}
	}
	return moved, Remove(root)
}
