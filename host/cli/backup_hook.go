package cli

import (
	"context"
	"fmt"

	"github.com/packhost/packhost/host/packs"
)

// backupPacks backs up the given packs' tables before an upgrade. A failed
// backup keeps nothing of itself and stops the upgrade.
func backupPacks(ctx context.Context, e env, sys *session, ids []string) error {
	var list []*packs.Pack
	for _, id := range ids {
		p := sys.Pack(id)
		if p == nil {
			return fmt.Errorf("back up pack %s: %w; pass --no-backup to upgrade without a backup", id, errNoPacksToBackUp)
		}
		list = append(list, p)
	}
	paths, err := backupWithProgress(ctx, e, sys, list)
	for _, p := range paths {
		sys.Log.Info("database backup written", "path", p)
	}
	if err != nil {
		return fmt.Errorf("%w; nothing was upgraded", err)
	}
	pruneBackups(sys)
	return nil
}
