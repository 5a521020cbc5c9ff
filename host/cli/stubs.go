package cli

import (
	"errors"
	"fmt"
)

// errNotImplemented answers commands whose behaviour has not landed yet.
var errNotImplemented = errors.New("not implemented yet")

func notYet(name string) func(env, []string) (int, error) {
	return func(e env, args []string) (int, error) {
		return 1, fmt.Errorf("host %s: %w", name, errNotImplemented)
	}
}
