package cli

import (
	"context"
	"fmt"

	"github.com/packhost/packhost/host/system"
)

// backupPacks backs up the given packs' tables before an upgrade.
func backupPacks(ctx context.Context, e env, sys *system.System, ids []string) error {
	return fmt.Errorf("back up %v: %w; pass --no-backup to upgrade without one", ids, errNotImplemented)
}
