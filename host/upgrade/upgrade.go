// Package upgrade drives table upgrades across packs: which packs need
// one, in which order (core first, then by declared dependencies), and
// running them with progress.
package upgrade

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"github.com/packhost/packhost/host/packs"
	"github.com/packhost/packhost/host/report"
	"github.com/packhost/packhost/internal/packpb"
	"github.com/packhost/packhost/internal/tablestate"
)

// Order sorts packs so that the core pack comes first and every pack comes
// after the packs it depends on; ties go by id. A dependency on a pack that
// is not running is an error, and so is a cycle.
func Order(list []*packs.Pack) ([]*packs.Pack, error) {
	byID := map[string]*packs.Pack{}
	for _, p := range list {
		byID[p.ID] = p
	}
	unique := make([]*packs.Pack, 0, len(byID))
	for _, p := range byID {
		unique = append(unique, p)
	}
	out, err := Sort(unique, func(p *packs.Pack) string { return p.ID }, func(p *packs.Pack) []string { return p.Info.DependsOn })
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Sort orders items (packs, update zips) the way packs are installed and
// upgraded: the core pack first, then each item after the items it
// depends on, ties by id. id names an item (ids are unique); deps lists
// the ids it depends on. Sort always returns every item, leaving out a
// dependency that is not among the items and breaking a cycle where it
// finds it; err names the first such problem, for callers that refuse
// them (those that only want an order ignore it).
func Sort[T any](items []T, id func(T) string, deps func(T) []string) ([]T, error) {
	byID := map[string]T{}
	ids := make([]string, 0, len(items))
	for _, it := range items {
		byID[id(it)] = it
		ids = append(ids, id(it))
	}
	sort.Strings(ids)
	var out []T
	var first error
	state := map[string]int{} // 1 visiting, 2 done
	var visit func(name string, path []string)
	visit = func(name string, path []string) {
		switch state[name] {
		case 2:
			return
		case 1:
			if first == nil {
				first = fmt.Errorf("packs depend on each other in a cycle: %s -> %s", strings.Join(path, " -> "), name)
			}
			return
		}
		state[name] = 1
		it := byID[name]
		ds := append([]string(nil), deps(it)...)
		if _, ok := byID["core"]; ok && name != "core" {
			ds = append([]string{"core"}, ds...)
		}
		for _, d := range ds {
			if _, ok := byID[d]; !ok {
				if first == nil {
					first = fmt.Errorf("pack %s depends on pack %s, which is not installed or did not start", name, d)
				}
				continue
			}
			visit(d, append(path, name))
		}
		state[name] = 2
		out = append(out, it)
	}
	if _, ok := byID["core"]; ok {
		visit("core", nil)
	}
	for _, name := range ids {
		visit(name, nil)
	}
	return out, first
}

// Needed returns the ids of the packs in r with a table missing or outdated.
func Needed(r *report.Report) map[string]bool {
	out := map[string]bool{}
	for _, p := range r.Packs {
		for _, t := range p.Tables {
			if tablestate.NeedsUpgrade(t.State) {
				out[p.ID] = true
			}
		}
	}
	return out
}

// Progress receives upgrade events, tagged with the pack.
type Progress func(packID string, ev *packpb.Progress)

// Packs upgrades the given packs in dependency order and stops at the
// first failure; the failed step was rolled back by the pack, and the
// packs before it stay upgraded.
//
// after, when set, runs after each pack's upgrade (the host fits the
// packs' database roles to the tables that now exist, so that the next
// pack may reference them).
func Packs(ctx context.Context, list []*packs.Pack, which map[string]bool, progress Progress, after func(context.Context) error) error {
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
		if after != nil {
			if err := after(ctx); err != nil {
				return fmt.Errorf("after the upgrade of pack %s: %w", p.ID, err)
			}
		}
	}
	return nil
}
