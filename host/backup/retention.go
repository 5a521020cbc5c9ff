package backup

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/packhost/packhost/internal/naming"
)

// Retention says how many backups Prune keeps: the newest SystemBackups
// system backups and, for each pack, the newest DatabaseBackupsPerPack
// database backups. It is the "retention" section of host.json.
type Retention struct {
	SystemBackups          int `json:"system_backups"`
	DatabaseBackupsPerPack int `json:"database_backups_per_pack"`
}

// DefaultRetention keeps the last 5 system backups and the last 10
// database backups of each pack.
var DefaultRetention = Retention{SystemBackups: 5, DatabaseBackupsPerPack: 10}

// Check refuses a retention that would keep no backup.
func (r Retention) Check() error {
	if r.SystemBackups < 1 || r.DatabaseBackupsPerPack < 1 {
		return fmt.Errorf("retention: system_backups %d and database_backups_per_pack %d must each be at least 1", r.SystemBackups, r.DatabaseBackupsPerPack)
	}
	return nil
}

// Pruned is a backup Prune would remove, or removed.
type Pruned struct {
	Name      string    `json:"name"`
	CreatedAt time.Time `json:"created_at"`
}

// Prune removes from dir (Updates_Backups) the backups past what r keeps,
// oldest first, never one that keep names (the backups an unfinished
// install's journal names), and returns what it removed. With dryRun it
// removes nothing and returns what it would remove (for the admin pages).
// Partial backups being written are not backups and are left alone.
func Prune(dir string, r Retention, keep func(name string) bool, dryRun bool) ([]Pruned, error) {
	if err := r.Check(); err != nil {
		return nil, err
	}
	entries, err := os.ReadDir(dir)
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("prune backups: %w", err)
	}
	type item struct {
		name  string
		at    time.Time
		n     int
		group string
	}
	groups := map[string][]item{}
	for _, e := range entries {
		name := e.Name()
		if at, n, pack, ok := ParseName(name); ok && e.IsDir() {
			groups["db "+pack] = append(groups["db "+pack], item{name, at, n, "db"})
			continue
		}
		if rest, ok := strings.CutPrefix(name, "system-"); ok && e.Type().IsRegular() && strings.HasSuffix(name, ".zip") {
			stamp, seq, _ := strings.Cut(strings.TrimSuffix(rest, ".zip"), ".")
			at, err := naming.ParseStamp(stamp)
			if err != nil {
				continue
			}
			n := 1
			fmt.Sscan(seq, &n)
			groups["system"] = append(groups["system"], item{name, at, n, "system"})
		}
	}
	var out []Pruned
	for g, items := range groups {
		limit := r.DatabaseBackupsPerPack
		if g == "system" {
			limit = r.SystemBackups
		}
		sort.Slice(items, func(i, j int) bool {
			if !items[i].at.Equal(items[j].at) {
				return items[i].at.After(items[j].at)
			}
			return items[i].n > items[j].n
		})
		for _, it := range items[min(limit, len(items)):] {
			if keep != nil && keep(it.name) {
				continue
			}
			if !dryRun {
				if err := os.RemoveAll(filepath.Join(dir, it.name)); err != nil {
					return out, fmt.Errorf("prune backup %s: %w", it.name, err)
				}
			}
			out = append(out, Pruned{Name: it.name, CreatedAt: it.at})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}
