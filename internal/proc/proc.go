// Package proc names a process so that another process can tell later
// whether it is still running: its pid alone is not enough, since pids are
// reused. A process is named by its pid, the boot it runs in and its start
// time (clock ticks after boot, from /proc/<pid>/stat on Linux).
//
// Locks name their holders with it, the install journal its owner, and the
// host its private socket directory, so that what a dead process left is
// recognised as such and nothing of a live one is taken for stale.
package proc

import (
	"errors"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// Identity names one process.
type Identity struct {
	PID int `json:"pid"`
	// Boot is the kernel's boot id; empty where it cannot be read.
	Boot string `json:"boot_id,omitempty"`
	// Start is the process's start time in clock ticks after boot; 0
	// where it cannot be read.
	Start uint64 `json:"start_ticks,omitempty"`
}

// Self is the running process's identity.
func Self() Identity { return Of(os.Getpid()) }

// Of is the identity of the process pid now (Start 0 when it is gone).
func Of(pid int) Identity {
	st, _ := startTicks(pid)
	return Identity{PID: pid, Boot: bootID(), Start: st}
}

// Alive reports whether the process id names is still running: the same
// boot, a process with its pid, started at the same time. Where boot ids
// or start times cannot be read, a process with the pid counts as alive.
func Alive(id Identity) bool {
	if id.PID <= 0 {
		return false
	}
	if b := bootID(); id.Boot != "" && b != "" && b != id.Boot {
		return false
	}
	if err := syscall.Kill(id.PID, 0); err != nil && !errors.Is(err, syscall.EPERM) {
		return false
	}
	if id.Start == 0 {
		return true
	}
	st, err := startTicks(id.PID)
	if err != nil {
		return !errors.Is(err, os.ErrNotExist)
	}
	return st == id.Start
}

// IsSelf reports whether id names the running process.
func IsSelf(id Identity) bool {
	me := Self()
	return id.PID == me.PID && (id.Start == 0 || me.Start == 0 || id.Start == me.Start)
}

func bootID() string {
	b, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// startTicks reads field 22 of /proc/<pid>/stat. The command name (field
// 2) may hold spaces and parentheses, so fields are counted after its last
// closing parenthesis.
func startTicks(pid int) (uint64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, errors.New("malformed stat")
	}
	f := strings.Fields(s[i+1:])
	// f[0] is field 3 (state); field 22 is f[19].
	if len(f) < 20 {
		return 0, errors.New("malformed stat")
	}
	return strconv.ParseUint(f[19], 10, 64)
}
