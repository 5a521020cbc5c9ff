package packs

import (
	"os/exec"
	"syscall"
)

// setDeathSignal asks the kernel to SIGKILL the pack when the host dies, so
// no pack outlives a host killed with SIGKILL. The SDK also watches its
// parent, for the systems without this.
func setDeathSignal(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
