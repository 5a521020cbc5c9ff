// Package updatezip is the update zip format of SPEC: it inspects and
// validates the zips in Updates_Pending (read-only), builds and signs them,
// and extracts a checked zip for the installer (host/install).
package updatezip

import "errors"

// ErrInvalidZip is wrapped by install errors when a pending zip failed
// validation. Nothing was changed; the caller reports each zip's problems
// and the admin fixes or removes the zip.
var ErrInvalidZip = errors.New("invalid update zip")

// ErrNothingPending is returned by an install when Updates_Pending holds
// no zip.
var ErrNothingPending = errors.New("no update zips are pending")
