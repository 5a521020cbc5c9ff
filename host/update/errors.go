// Package update handles update zips: it inspects and validates the zips in
// Updates_Pending, builds and signs them, takes the system backup, and
// installs them with a journal so that an install the host did not finish
// is finished or undone at the next start.
package update

import "errors"

// ErrInvalidZip is wrapped by install errors when a pending zip failed
// validation. Nothing was changed; the caller reports each zip's problems
// and the admin fixes or removes the zip.
var ErrInvalidZip = errors.New("invalid update zip")

// ErrNothingPending is returned by Install when Updates_Pending holds no zip.
var ErrNothingPending = errors.New("no update zips are pending")

// ErrInterrupted is wrapped by Recover's error when an interrupted install
// could be neither finished nor undone; the system directory keeps its
// journal and the host must not start until an admin has looked.
var ErrInterrupted = errors.New("an interrupted install could not be recovered")
