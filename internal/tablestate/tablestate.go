// Package tablestate names the states of a table (SPEC): the words the
// status report, its JSON, the admin pages and the test kit use for the
// states a pack's CheckSchema reports on the wire.
package tablestate

import "github.com/packhost/packhost/internal/packpb"

// The states of a table.
const (
	// OK: installed at the code's version, live schema as registered.
	OK = "ok"
	// Missing: not installed yet; an upgrade creates it.
	Missing = "missing"
	// Outdated: installed at an older version than the code's; an
	// upgrade brings it up.
	Outdated = "outdated"
	// Newer: installed at a newer version than the code's (a downgrade):
	// a conflict no upgrade passes.
	Newer = "newer"
	// VersionMismatch: the live schema is another version's than the
	// recorded one; `host db repair` records the true one.
	VersionMismatch = "version_mismatch"
	// Drift: the live schema is no version's: a conflict.
	Drift = "drift"
)

// Name is the name of a wire state ("unknown" for one this host does not
// know).
func Name(s packpb.TableState) string {
	switch s {
	case packpb.TableState_TABLE_STATE_OK:
		return OK
	case packpb.TableState_TABLE_STATE_MISSING:
		return Missing
	case packpb.TableState_TABLE_STATE_OUTDATED:
		return Outdated
	case packpb.TableState_TABLE_STATE_NEWER:
		return Newer
	case packpb.TableState_TABLE_STATE_VERSION_MISMATCH:
		return VersionMismatch
	case packpb.TableState_TABLE_STATE_DRIFT:
		return Drift
	}
	return "unknown"
}

// Conflict reports whether no upgrade may run past a table in state:
// newer, drift or version_mismatch.
func Conflict(state string) bool {
	return state == Newer || state == Drift || state == VersionMismatch
}

// NeedsUpgrade reports whether an upgrade would change a table in state:
// missing or outdated.
func NeedsUpgrade(state string) bool { return state == Missing || state == Outdated }
