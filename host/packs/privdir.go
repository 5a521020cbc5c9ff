package packs

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/packhost/packhost/internal/proc"
)

// ownerFile names the process that made a private directory.
const ownerFile = "owner.json"

// MakePrivateDir makes a directory only the host's user can enter (0700),
// under the OS temp dir, named prefix<pid>-<random>, with a file naming
// the process that made it, so that SweepPrivateDirs can tell the
// directories of dead hosts from those of live ones.
func MakePrivateDir(prefix string) (string, error) {
	dir, err := os.MkdirTemp("", fmt.Sprintf("%s%d-", prefix, os.Getpid()))
	if err != nil {
		return "", err
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		_ = os.RemoveAll(dir)
		return "", err
	}
	data, _ := json.Marshal(proc.Self())
	if err := os.WriteFile(filepath.Join(dir, ownerFile), data, 0o600); err != nil {
		_ = os.RemoveAll(dir)
		return "", err
	}
	return dir, nil
}

// SweepPrivateDirs removes the private directories (see MakePrivateDir)
// of hosts that are gone: those whose owner file names a dead process, and
// those without one (made before owners were recorded) unchanged for an
// hour. Only directories of this user are touched. It returns how many it
// removed.
func SweepPrivateDirs() int {
	matches, _ := filepath.Glob(filepath.Join(os.TempDir(), "packhost-*"))
	n := 0
	for _, dir := range matches {
		fi, err := os.Lstat(dir)
		if err != nil || !fi.IsDir() {
			continue
		}
		if st, ok := fi.Sys().(*syscall.Stat_t); !ok || int(st.Uid) != os.Getuid() {
			continue
		}
		base := filepath.Base(dir)
		if strings.HasPrefix(base, "packhost-pg.") {
			continue // a test server's data, not ours
		}
		data, err := os.ReadFile(filepath.Join(dir, ownerFile))
		switch {
		case err == nil:
			var id proc.Identity
			if json.Unmarshal(data, &id) != nil || proc.Alive(id) {
				continue
			}
		case os.IsNotExist(err):
			if time.Since(fi.ModTime()) < time.Hour {
				continue
			}
		default:
			continue
		}
		if os.RemoveAll(dir) == nil {
			n++
		}
	}
	return n
}
