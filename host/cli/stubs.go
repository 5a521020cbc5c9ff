package cli

import "errors"

// errNotImplemented answers commands whose behaviour has not landed yet.
var errNotImplemented = errors.New("not implemented yet")
