// Package dbupdate drives database upgrades across packs: which packs need
// one, in which order (core first, then by declared dependencies), and
// running them with progress.
package dbupdate

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"github.com/packhost/packhost/host/packs"
	"github.com/packhost/packhost/host/report"
	"github.com/packhost/packhost/internal/packpb"
)

// Order sorts packs so that the core pack comes first and every pack comes
// after the packs it depends on; ties go by id. A dependency on a pack that
// is not running is an error, and so is a cycle.
func Order(list []*packs.Pack) ([]*packs.Pack, error) {
	byID := map[string]*packs.Pack{}
	for _, p := range list {
		byID[p.ID] = p
	}
	ids := make([]string, 0, len(list))
	for id := range byID {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	var out []*packs.Pack
	state := map[string]int{} // 1 visiting, 2 done
	var visit func(id string, path []string) error
	visit = func(id string, path []string) error {
		switch state[id] {
		case 2:
			return nil
		case 1:
			return fmt.Errorf("packs depend on each other in a cycle: %s -> %s", strings.Join(path, " -> "), id)
		}
		state[id] = 1
		p := byID[id]
		deps := append([]string(nil), p.Info.DependsOn...)
		if id != "core" && byID["core"] != nil {
			deps = append([]string{"core"}, deps...)
		}
		for _, d := range deps {
			if byID[d] == nil {
				return fmt.Errorf("pack %s depends on pack %s, which is not installed or did not start", id, d)
			}
			if err := visit(d, append(path, id)); err != nil {
				return err
			}
		}
		state[id] = 2
		out = append(out, p)
		return nil
	}
	if byID["core"] != nil {
		if err := visit("core", nil); err != nil {
			return nil, err
		}
	}
	for _, id := range ids {
		if err := visit(id, nil); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// Needed returns the ids of the packs in r with a table missing or outdated.
func Needed(r *report.Report) map[string]bool {
	out := map[string]bool{}
	for _, p := range r.Packs {
		for _, t := range p.Tables {
			if t.State == report.StateMissing || t.State == report.StateOutdated {
				out[p.ID] = true
			}
		}
	}
	return out
}

// Progress receives upgrade events, tagged with the pack.
type Progress func(packID string, ev *packpb.Progress)

// Upgrade upgrades the given packs in dependency order and stops at the
// first failure; the failed step was rolled back by the pack, and the
// packs before it stay upgraded.
func Upgrade(ctx context.Context, list []*packs.Pack, which map[string]bool, progress Progress) error {
	ordered, err := Order(list)
	if err != nil {
		return err
	}
	for _, p := range ordered {
		if !which[p.ID] {
			continue
		}
		err := p.Upgrade(ctx, nil, func(ev *packpb.Progress) {
			if progress != nil {
				progress(p.ID, ev)
			}
		})
		if err != nil {
			return fmt.Errorf("upgrade pack %s: %w", p.ID, err)
		}
	}
	return nil
}
