package recovery

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"time"

	"github.com/packhost/packhost/host/backup"
	"github.com/packhost/packhost/host/system"
)

// SweepAge is how long a temporary file must have been left unchanged
// before Sweep removes it. Nothing keeps two host processes from sharing
// a system directory (a `host db backup` may run beside `host run`), and
// a writer still at work keeps touching its file; one left by a killed
// host does not change again.
const SweepAge = 10 * time.Minute

// tempPatterns are the names of the temporary files this host writes,
// by the folder of the system directory they are written in; Sweep
// removes only names that match.
var tempPatterns = map[string][]*regexp.Regexp{
	// The journal being written (Journal.write).
	".": {regexp.MustCompile(`^` + regexp.QuoteMeta(JournalFile) + `\.tmp$`)},
	// A system backup being written (BackupSystem); a database backup
	// being written (backup.Pack) is matched by backup.IsPartial.
	system.BackupsDir: {regexp.MustCompile(`^\.system-\d+\.zip\.tmp$`)},
	// A zip being copied in (host pack install) or written by Build or
	// Sign (writeZipAtomic).
	system.PendingDir: {
		regexp.MustCompile(`^[^.].*\.zip\.tmp$`),
		regexp.MustCompile(`^\..+\.zip\.tmp-\d+$`),
	},
}

// Sweep removes the temporary files and directories a killed host left in
// the system directory root: system backups and database backups being
// written, zips being copied or signed, the journal being written. Only
// names this host gives such files are touched, and only when unchanged
// for SweepAge (by the newest modification time inside a directory). It
// returns what it removed.
func Sweep(root string, now time.Time) ([]string, error) {
	var removed []string
	var errs []error
	for dir, pats := range tempPatterns {
		entries, err := os.ReadDir(filepath.Join(root, dir))
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, e := range entries {
			if !ourTemp(dir, e, pats) {
				continue
			}
			p := filepath.Join(root, dir, e.Name())
			newest, err := newestChange(p)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			// The journal is written only under the system's write lock,
			// which the caller holds: its temporary file is a killed
			// writer's at any age.
			if now.Sub(newest) < SweepAge && dir != "." {
				continue
			}
			if err := os.RemoveAll(p); err != nil {
				errs = append(errs, err)
				continue
			}
			removed = append(removed, filepath.Join(dir, e.Name()))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return removed, fmt.Errorf("remove temporary files a stopped host left: %w", err)
	}
	return removed, nil
}

func ourTemp(dir string, e fs.DirEntry, pats []*regexp.Regexp) bool {
	if dir == system.BackupsDir && e.IsDir() && backup.IsPartial(e.Name()) {
		return true
	}
	if !e.Type().IsRegular() {
		return false
	}
	for _, re := range pats {
		if re.MatchString(e.Name()) {
			return true
		}
	}
	return false
}

// newestChange is the newest modification time of p and, for a
// directory, of everything under it.
func newestChange(p string) (time.Time, error) {
	var newest time.Time
	err := filepath.WalkDir(p, func(_ string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		if info.ModTime().After(newest) {
			newest = info.ModTime()
		}
		return nil
	})
	return newest, err
}
