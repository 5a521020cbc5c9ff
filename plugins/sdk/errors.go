package sdk

import "github.com/packhost/packhost/internal/packerr"

// Errors a pack or the host can test for with errors.Is. They keep their
// identity across the process boundary: the host sees the same values.
var (
	// ErrDowngrade: a table's installed version is newer than the code.
	// Nothing is upgraded past it; install the newer pack or restore a
	// matching backup.
	ErrDowngrade = packerr.ErrDowngrade
	// ErrDrift: a table's live schema matches no registered version.
	// Compare the diff, then fix the table or restore a backup.
	ErrDrift = packerr.ErrDrift
	// ErrVersionMismatch: the live schema matches another registered
	// version than the stored one; `host db repair` records the real one.
	ErrVersionMismatch = packerr.ErrVersionMismatch
	// ErrStepFailed: an upgrade step failed and was rolled back; the
	// message names the pack, table and step.
	ErrStepFailed = packerr.ErrStepFailed
	// ErrNoDatabase: the pack was asked for database work without a
	// database (it was not started by the host).
	ErrNoDatabase = packerr.ErrNoDatabase
	// ErrNotSupported: the pack lacks the optional capability asked for.
	ErrNotSupported = packerr.ErrNotSupported
	// ErrUnknownTable: a request named a table the pack does not own.
	ErrUnknownTable = packerr.ErrUnknownTable
	// ErrBackupInvalid: a backup failed verification; nothing was restored.
	ErrBackupInvalid = packerr.ErrBackupInvalid
)
