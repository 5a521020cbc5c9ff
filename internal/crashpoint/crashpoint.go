// Package crashpoint lets the crash tests kill the host with SIGKILL at a
// named step of an install: the host checks At(step) at each step, and
// kills itself when PACKHOST_CRASH_AT names that step. Nothing happens
// when the variable is unset.
package crashpoint

import "os"

// Env names the step at which the host kills itself.
const Env = "PACKHOST_CRASH_AT"

// At kills the process with SIGKILL when Env names step.
func At(step string) {
	if os.Getenv(Env) == step {
		if p, err := os.FindProcess(os.Getpid()); err == nil {
			_ = p.Kill() // SIGKILL on unix
		}
		select {} // the signal is on its way
	}
}
