package updatezip

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/packhost/packhost/host/system"
	"github.com/packhost/packhost/internal/backupfile"
	"github.com/packhost/packhost/internal/naming"
)

// Reject moves a pending zip (its file name in Updates_Pending) aside to
// Updates_Rejected, with a file beside it saying why and when, so that the
// site can serve without it and nothing is lost. It returns the zip's new
// path.
func Reject(root, name, reason string, now time.Time) (string, error) {
	if name != filepath.Base(name) || strings.HasPrefix(name, ".") || !strings.HasSuffix(strings.ToLower(name), ".zip") {
		return "", fmt.Errorf("reject %q: name a zip of %s by its file name", name, system.PendingDir)
	}
	src := filepath.Join(root, system.PendingDir, name)
	if _, err := os.Stat(src); err != nil {
		return "", fmt.Errorf("reject %s: %w", name, err)
	}
	dir := filepath.Join(root, system.RejectedDir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	base := strings.TrimSuffix(name, filepath.Ext(name)) + "-" + naming.Stamp(now)
	dst := filepath.Join(dir, base+".zip")
	for n := 2; ; n++ {
		if _, err := os.Lstat(dst); errors.Is(err, os.ErrNotExist) {
			break
		}
		dst = filepath.Join(dir, fmt.Sprintf("%s.%d.zip", base, n))
	}
	note := fmt.Sprintf("%s was moved here from %s at %s.\nReason: %s\n", name, system.PendingDir, now.UTC().Format(time.RFC3339), reason)
	if err := os.WriteFile(strings.TrimSuffix(dst, ".zip")+".reason.txt", []byte(note), 0o644); err != nil {
		return "", err
	}
	if err := os.Rename(src, dst); err != nil {
		return "", err
	}
	if err := backupfile.SyncDir(dir); err != nil {
		return dst, err
	}
	return dst, backupfile.SyncDir(filepath.Join(root, system.PendingDir))
}
