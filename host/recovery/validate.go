package recovery

import (
	"fmt"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/packhost/packhost/host/backup"
	"github.com/packhost/packhost/internal/naming"
)

// stagePattern is what the installer names a pack's staged and old
// directories: .<id>.new-<stamp>-<suffix> and .<id>.old-<stamp>-<suffix>.
var stageSuffix = regexp.MustCompile(`^[0-9A-Za-z.-]{1,80}$`)

var systemBackupName = regexp.MustCompile(`^system-` + naming.StampExpr + `(\.[0-9]{1,4})?\.zip$`)

// validate checks every name the journal gives before anything acts on
// it: a journal is a file anyone with write access to the system directory
// can edit, and recovery removes and renames what it names. Nothing
// outside the system directory is ever named by a valid journal.
func (j *Journal) validate() error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("the journal names %s, which is not a name this host writes; nothing was acted on", fmt.Sprintf(format, a...))
	}
	if _, err := naming.ParseStamp(j.Stamp); err != nil {
		return bad("the stamp %q", j.Stamp)
	}
	switch j.State {
	case StateStaging, StateSwapping, StateSwapped, StateUpgrading, StateCommitted, StateRestoreDB:
	default:
		return bad("the state %q", j.State)
	}
	for _, e := range j.Packs {
		if !naming.PackID.MatchString(e.ID) {
			return bad("the pack %q", e.ID)
		}
		if !zipName(e.Zip) {
			return bad("the zip %q of pack %s", e.Zip, e.ID)
		}
		for _, d := range []struct{ name, kind string }{{e.Stage, "new"}, {e.Old, "old"}} {
			rest, ok := strings.CutPrefix(d.name, "."+e.ID+"."+d.kind+"-")
			if !ok || !stageSuffix.MatchString(rest) || strings.Contains(rest, "..") {
				return bad("the directory %q of pack %s", d.name, e.ID)
			}
		}
		if err := validNewDB(e.New); err != nil {
			return bad("%v of pack %s", err, e.ID)
		}
	}
	for _, e := range j.DBOnly {
		if !naming.PackID.MatchString(e.ID) {
			return bad("the pack %q", e.ID)
		}
		if err := validNewDB(e.New); err != nil {
			return bad("%v of pack %s", err, e.ID)
		}
	}
	for _, id := range append(append([]string{}, j.BackedUp...), j.Upgrade...) {
		if !naming.PackID.MatchString(id) {
			return bad("the pack %q", id)
		}
	}
	if j.SystemBackup != "" && !systemBackupName.MatchString(filepath.Base(j.SystemBackup)) {
		return bad("the system backup %q", j.SystemBackup)
	}
	if j.DBBackup != "" {
		for _, name := range strings.Split(j.DBBackup, ",") {
			if _, err := naming.ParseStamp(name); err == nil {
				continue // a token of the first format: db-<token>-<id>
			}
			if _, _, _, ok := backup.ParseName(name); !ok {
				return bad("the database backup %q", name)
			}
		}
	}
	return nil
}

func zipName(s string) bool {
	return s != "" && filepath.Base(s) == s && !strings.ContainsAny(s, `/\`) && !strings.HasPrefix(s, ".") &&
		strings.HasSuffix(strings.ToLower(s), ".zip") && !strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f })
}

func validNewDB(n *NewPackDB) error {
	if n == nil {
		return nil
	}
	for _, t := range append(append([]string{}, n.Created...), n.Kept...) {
		if !naming.TableName.MatchString(t) {
			return fmt.Errorf("the table %q", t)
		}
	}
	return nil
}
