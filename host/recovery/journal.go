// Package recovery is the install journal (its on-disk format) and what
// reads it: finishing or undoing an install the host did not complete, and
// sweeping the temporary files a stopped host left.
package recovery

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/packhost/packhost/internal/backupfile"
	"github.com/packhost/packhost/internal/meta"
	"github.com/packhost/packhost/internal/proc"
)

// JournalFile is the install journal in the system directory. While it
// exists an install is under way or was interrupted; Recover reads it.
const JournalFile = ".install-journal.json"

// Journal states, in the order an install passes them.
const (
	// StateStaging: backups taken, new files being written beside the old.
	StateStaging = "staging"
	// StateSwapping: packs are being swapped by renames.
	StateSwapping = "swapping"
	// StateSwapped: every pack swapped; the new binaries are being started.
	StateSwapped = "swapped"
	// StateUpgrading: the database upgrade has started.
	StateUpgrading = "upgrading"
	// StateCommitted: the install succeeded; zips are being moved and the
	// old versions removed.
	StateCommitted = "committed"
	// StateRestoreDB: the files were put back; the database must be
	// restored from DBBackup before the host starts.
	StateRestoreDB = "restore-db"
)

// JournalFormat tags the journal's JSON; Read refuses formats it does not
// know. A journal without a format is the first one's (see readV1).
const JournalFormat = "packhost-install-journal/2"

// Journal records an install so that it can be finished or undone. Its
// JSON form is the on-disk format: every field has its tag, and a change
// of meaning gets a new JournalFormat.
type Journal struct {
	Format string `json:"format"`
	// Stamp is the install's UTC timestamp (naming.StampLayout).
	Stamp string `json:"stamp"`
	State string `json:"state"`
	// Owner is the process that wrote the journal. Only a process holding
	// the system's write lock, while the owner is gone, recovers.
	Owner Owner `json:"owner"`
	// DBBackup is the token of the database backup taken before the
	// install (its directory names in Updates_Backups, comma separated),
	// "" when none was taken (--no-backup, or nothing to back up).
	DBBackup string `json:"db_backup,omitempty"`
	// BackedUp are the packs whose tables DBBackup holds: a rollback
	// restores them.
	BackedUp     []string       `json:"backed_up,omitempty"`
	SystemBackup string         `json:"system_backup,omitempty"`
	Packs        []JournalEntry `json:"packs"`
	// Upgrade are the packs whose tables the install upgrades, in order:
	// the installed packs and the packs they depend on whose tables need
	// it.
	Upgrade []string `json:"upgrade,omitempty"`
	// DBOnly are packs the install does not replace whose tables it
	// creates (dependencies of an installed pack, never upgraded before).
	DBOnly []DBEntry `json:"db_only,omitempty"`
	// LastError is why the last recovery could not finish; `host status`
	// shows it and `host recover` offers the ways out.
	LastError string `json:"last_error,omitempty"`
}

// Owner names the process that wrote a journal.
type Owner struct {
	proc.Identity
	Command string    `json:"command"`
	Host    string    `json:"hostname"`
	Since   time.Time `json:"since"`
}

// NewOwner is the running process as a journal's owner.
func NewOwner(command string) Owner {
	host, _ := os.Hostname()
	return Owner{Identity: proc.Self(), Command: command, Host: host, Since: time.Now().UTC()}
}

// Gone reports whether the owner has ended. An owner on another machine
// (a system directory on shared storage) cannot be checked and counts as
// running.
func (o Owner) Gone() bool {
	if o.PID == 0 {
		return true // a journal of the first format names no owner
	}
	if host, _ := os.Hostname(); o.Host != "" && o.Host != host {
		return false
	}
	return !proc.Alive(o.Identity)
}

// String names the owner for messages.
func (o Owner) String() string {
	if o.PID == 0 {
		return "an earlier host"
	}
	return fmt.Sprintf("%s (pid %d on %s, since %s)", o.Command, o.PID, o.Host, o.Since.UTC().Format("2006-01-02 15:04:05 UTC"))
}

// DBEntry is a pack whose tables an install creates without replacing it.
type DBEntry struct {
	ID  string     `json:"id"`
	New *NewPackDB `json:"new_pack_db"`
}

// JournalEntry is one pack of an install. Dirs are relative to <root>/packs.
type JournalEntry struct {
	ID         string `json:"id"`
	Version    string `json:"version"`
	OldVersion string `json:"old_version,omitempty"`
	// Zip is the zip's file name in Updates_Pending.
	Zip string `json:"zip"`
	// Stage holds the new files until the swap; Old the old ones after it.
	Stage string `json:"stage"`
	Old   string `json:"old"`
	// New is what a rollback needs to put the database back as it was,
	// recorded before the tables are upgraded: for a pack that was not
	// installed before, everything of it; for a pack the install replaces,
	// the tables its new version adds (the backup, restored by the old
	// version, knows nothing of them).
	New *NewPackDB `json:"new_pack_db,omitempty"`
}

// NewPackDB is what the database held, before an install, of the tables a
// pack's new version declares. Undoing the install drops the Created
// tables and puts the recorded meta rows back; nothing else of the
// database is touched.
type NewPackDB struct {
	// Replaced is set for a pack that was installed before: its backup
	// puts back its settings and its other tables, so only the version
	// keys and schema_registry rows of the Created tables are recorded
	// and put back.
	Replaced bool `json:"replaced,omitempty"`
	// Created are the tables the pack declares that did not exist before
	// the install.
	Created []string `json:"created"`
	// Kept are tables the pack declares that already existed (left by an
	// earlier install of the pack). A rollback leaves them, their version
	// keys and their schema_registry rows as the upgrade left them.
	Kept []string `json:"kept,omitempty"`
	// Settings are the pack's pack_settings rows before the install,
	// without the version keys of Kept tables; for a Replaced pack, only
	// the version keys of Created tables.
	Settings []meta.Setting `json:"settings,omitempty"`
	// Registry are the schema_registry rows of the Created tables before
	// the install.
	Registry []meta.Registration `json:"registry,omitempty"`
}

// DBUndoable reports whether the tables can be put back as they were
// before the install: every replaced pack's tables were backed up (new
// packs' and dependencies' created tables were recorded).
func (j *Journal) DBUndoable() bool {
	for _, e := range j.Packs {
		if e.OldVersion != "" && !slices.Contains(j.RestoreIDs(), e.ID) {
			return false
		}
	}
	return true
}

// IDs are the install's pack ids, in install order.
func (j *Journal) IDs() []string {
	out := make([]string, len(j.Packs))
	for i, e := range j.Packs {
		out[i] = e.ID
	}
	return out
}

// RestoreIDs are the packs a rollback restores from DBBackup.
func (j *Journal) RestoreIDs() []string {
	if j.DBBackup == "" {
		return nil
	}
	if len(j.BackedUp) > 0 {
		return j.BackedUp
	}
	// A journal of the first format backed up the replaced packs.
	var out []string
	for _, e := range j.Packs {
		if e.OldVersion != "" {
			out = append(out, e.ID)
		}
	}
	return out
}

// Created are the records of the tables the install creates, by pack: a
// rollback drops them and puts their meta rows back.
func (j *Journal) Created() []DBEntry {
	var out []DBEntry
	for _, e := range j.Packs {
		if e.New != nil {
			out = append(out, DBEntry{ID: e.ID, New: e.New})
		}
	}
	return append(out, j.DBOnly...)
}

// Path is the journal file of the system directory root.
func Path(root string) string { return filepath.Join(root, JournalFile) }

// Read returns nil when there is no journal.
func Read(root string) (*Journal, error) {
	data, err := os.ReadFile(Path(root))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read install journal: %w", err)
	}
	unreadable := func(err error) error {
		return fmt.Errorf("install journal %s is unreadable (%v); restore the system directory from the newest Updates_Backups/system-*.zip", Path(root), err)
	}
	var head struct {
		Format string `json:"format"`
	}
	if err := json.Unmarshal(data, &head); err != nil {
		return nil, unreadable(err)
	}
	var j Journal
	switch head.Format {
	case JournalFormat:
		err = json.Unmarshal(data, &j)
	case "":
		err = readV1(data, &j)
	default:
		return nil, unreadable(fmt.Errorf("format %q is not %q: it was written by another version of the host", head.Format, JournalFormat))
	}
	if err != nil {
		return nil, unreadable(err)
	}
	if err := j.validate(); err != nil {
		return nil, fmt.Errorf("install journal %s: %w; `host recover` offers the ways out", Path(root), err)
	}
	j.Format = JournalFormat
	return &j, nil
}

// write replaces the journal atomically and durably: a temporary file,
// fsync, rename, fsync of the directory.
func (j *Journal) Write(root string) error {
	j.Format = JournalFormat
	data, err := json.MarshalIndent(j, "", "  ")
	if err != nil {
		return err
	}
	tmp := Path(root) + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("write install journal: %w", err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("write install journal: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("write install journal: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write install journal: %w", err)
	}
	if err := os.Rename(tmp, Path(root)); err != nil {
		return fmt.Errorf("write install journal: %w", err)
	}
	return backupfile.SyncDir(root)
}

func (j *Journal) SetState(root, state string) error {
	j.State = state
	return j.Write(root)
}

func Remove(root string) error {
	if err := os.Remove(Path(root)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove install journal: %w", err)
	}
	return backupfile.SyncDir(root)
}

// OrNew shows an empty old version as "(new)": the pack was not installed.
func OrNew(version string) string {
	if version == "" {
		return "(new)"
	}
	return version
}
