package update

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/packhost/packhost/internal/backupfile"
	"github.com/packhost/packhost/internal/meta"
)

// JournalFile is the install journal in the system directory. While it
// exists an install is under way or was interrupted; Recover reads it.
const JournalFile = ".install-journal.json"

// Journal states, in the order an install passes them.
const (
	// stateStaging: backups taken, new files being written beside the old.
	stateStaging = "staging"
	// stateSwapping: packs are being swapped by renames.
	stateSwapping = "swapping"
	// stateSwapped: every pack swapped; the new binaries are being started.
	stateSwapped = "swapped"
	// stateUpgrading: the database upgrade has started.
	stateUpgrading = "upgrading"
	// stateCommitted: the install succeeded; zips are being moved and the
	// old versions removed.
	stateCommitted = "committed"
	// stateRestoreDB: the files were put back; the database must be
	// restored from DBBackup before the host starts.
	stateRestoreDB = "restore-db"
)

// Journal records an install so that it can be finished or undone.
type Journal struct {
	// Stamp is the install's UTC timestamp (TimeFormat).
	Stamp string `json:"stamp"`
	State string `json:"state"`
	// DBBackup is the token of the database backup taken before the
	// install, "" when none was taken (--no-backup, or no pack was
	// installed before).
	DBBackup     string         `json:"db_backup,omitempty"`
	SystemBackup string         `json:"system_backup,omitempty"`
	Packs        []JournalEntry `json:"packs"`
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

// dbUndoable reports whether the tables can be put back as they were
// before the install: every replaced pack's tables were backed up, and
// every new pack's tables were recorded.
func (j *Journal) dbUndoable() bool {
	for _, e := range j.Packs {
		if e.OldVersion != "" && j.DBBackup == "" {
			return false
		}
	}
	return true
}

// ids are the install's pack ids, in install order.
func (j *Journal) ids() []string {
	out := make([]string, len(j.Packs))
	for i, e := range j.Packs {
		out[i] = e.ID
	}
	return out
}

// replacedIDs are the ids of the packs the install replaces: those the
// database backup holds.
func (j *Journal) replacedIDs() []string {
	var out []string
	for _, e := range j.Packs {
		if e.OldVersion != "" {
			out = append(out, e.ID)
		}
	}
	return out
}

func journalPath(root string) string { return filepath.Join(root, JournalFile) }

// readJournal returns nil when there is no journal.
func readJournal(root string) (*Journal, error) {
	data, err := os.ReadFile(journalPath(root))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read install journal: %w", err)
	}
	var j Journal
	if err := json.Unmarshal(data, &j); err != nil {
		return nil, fmt.Errorf("install journal %s is unreadable (%v); restore the system directory from the newest Updates_Backups/system-*.zip", journalPath(root), err)
	}
	return &j, nil
}

// write replaces the journal atomically and durably: a temporary file,
// fsync, rename, fsync of the directory.
func (j *Journal) write(root string) error {
	data, err := json.MarshalIndent(j, "", "  ")
	if err != nil {
		return err
	}
	tmp := journalPath(root) + ".tmp"
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
	if err := os.Rename(tmp, journalPath(root)); err != nil {
		return fmt.Errorf("write install journal: %w", err)
	}
	return backupfile.SyncDir(root)
}

func (j *Journal) setState(root, state string) error {
	j.State = state
	return j.write(root)
}

func removeJournal(root string) error {
	if err := os.Remove(journalPath(root)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove install journal: %w", err)
	}
	return backupfile.SyncDir(root)
}

// EnvCrashAt names an install step at which the host kills itself with
// SIGKILL. It exists for the crash tests; see the crash* calls in Install.
const EnvCrashAt = "PACKHOST_CRASH_AT"

// CrashSteps are the steps EnvCrashAt may name, in install order.
var CrashSteps = []string{
	"after-system-backup", "after-db-backup", "after-journal", "mid-stage", "after-stage",
	"mid-swap", "after-swap", "after-relaunch", "after-upgrade",
	"after-commit", "mid-move",
}

// CrashBetweenPackUpgrades is the step between two packs' table upgrades
// within one install; it is reached only when an install holds two packs
// or more, so it is not among CrashSteps.
const CrashBetweenPackUpgrades = "between-pack-upgrades"

func crashPoint(step string) {
	if os.Getenv(EnvCrashAt) == step {
		if p, err := os.FindProcess(os.Getpid()); err == nil {
			_ = p.Kill() // SIGKILL on unix
		}
		select {} // the signal is on its way
	}
}
