package install

// CrashSteps are the steps at which the crash tests kill the host (see
// internal/crashpoint), in install order.
var CrashSteps = []string{
	"after-system-backup", "after-db-backup", "after-journal", "mid-stage", "after-stage",
	"mid-swap", "after-swap", "after-relaunch", "after-upgrade",
	"after-commit", "mid-move",
}

// CrashBetweenPackUpgrades is the step between two packs' table upgrades
// within one install; it is reached only when an install holds two packs
// or more, so it is not among CrashSteps.
const CrashBetweenPackUpgrades = "between-pack-upgrades"
