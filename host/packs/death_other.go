//go:build !linux

package packs

import "os/exec"

// setDeathSignal does nothing here: the SDK's parent watch stops the pack.
func setDeathSignal(cmd *exec.Cmd) {}
