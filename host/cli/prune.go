package cli

import (
	"github.com/packhost/packhost/host/backup"
	"github.com/packhost/packhost/host/recovery"
	"github.com/packhost/packhost/host/system"
)

// retention is the system's "retention" setting of host.json, or the
// default.
func retention(root string) (backup.Retention, error) {
	r := backup.DefaultRetention
	if err := system.ReadConfigSection(root, "retention", &r); err != nil {
		return r, err
	}
	return r, r.Check()
}

// pruneBackups removes the backups past the retention setting, never one
// an install journal names. A failure is logged: the backups stay, which
// loses nothing.
func pruneBackups(s *session) {
	r, err := retention(s.Root)
	if err != nil {
		s.log.Warn("backups were not pruned", "error", err)
		return
	}
	protected := recovery.ProtectedBackups(s.Root)
	removed, err := backup.Prune(s.Path(system.BackupsDir), r, func(name string) bool { return protected[name] }, false)
	for _, p := range removed {
		s.log.Info("pruned an old backup (retention in host.json)", "backup", p.Name)
	}
	if err != nil {
		s.log.Warn("backups were not all pruned", "error", err)
	}
}
