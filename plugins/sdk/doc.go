// Package sdk is how a pack is written: the only packhost package a pack
// author imports.
//
// A pack is a Go program whose main declares a Pack value — its id, its
// semver version, and the database tables it owns with the steps that
// build each of them version by version — and passes it to Serve:
//
//	func main() {
//		sdk.Serve(sdk.Pack{
//			ID:      "guestbook",
//			Version: "1.1.0",
//			Tables: []sdk.Table{{
//				Name: "entries",
//				Steps: []sdk.Step{
//					{Summary: "creates entries", Up: sdk.SQL(`CREATE TABLE entries (...)`)},
//					{Summary: "adds entries.author", Up: sdk.SQL(`ALTER TABLE entries ADD COLUMN ...`)},
//				},
//			}},
//		})
//	}
//
// The host runs the program as a subprocess. Serve handles everything
// between them: the handshake, the gRPC server, logging to stderr (the
// host re-logs it under the pack's id), the database connection the host
// hands over, and errors that keep their identity across the process
// boundary (errors.Is(err, sdk.ErrDowngrade) works in the host).
//
// # Tables and steps
//
// A table's code version is the number of its steps: Steps[0] creates it
// (version 1), Steps[i] takes it from version i to i+1. The host records
// each table's installed version in pack_settings and the canonical text
// of its schema at that version in schema_registry, so at every start it
// can tell a table that is ok, missing, outdated, newer than the code
// (a downgrade: fatal), at another registered version than recorded
// (repairable with `host db repair`), or drifted from every registered
// version (a conflict, reported with a diff).
//
// Each step runs in one transaction together with its version bump and
// registry row: a step that fails leaves the table, its version and the
// registry exactly as they were. Released steps are never edited; a change
// is a new step. `host pack build` records the schema every version has
// (it replays the steps on a scratch database: see Replaying), lints each
// step, and with --previous refuses a history that differs from an
// earlier release's; a site refuses such a release before installing it.
// Tests prove the history with package sdktest: sdktest.CheckUpgradePaths
// upgrades tables that hold rows along the released paths and compares
// them with a fresh install, on SQLite and PostgreSQL.
//
// # The lifecycle
//
// The numbered steps of a pack's life are written on the Pack type.
package sdk
