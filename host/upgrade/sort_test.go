package upgrade_test

import (
	"strings"
	"testing"

	"github.com/packhost/packhost/host/upgrade"
)

type node struct {
	id   string
	deps []string
}

func TestSortPutsCoreThenDependenciesFirst(t *testing.T) {
	cases := []struct {
		name  string
		nodes []node
		want  string
		err   string
	}{
		{"core goes first and ties go by id",
			[]node{{"zeta", nil}, {"alpha", nil}, {"core", nil}}, "core alpha zeta", ""},
		{"a pack goes after the packs it depends on",
			[]node{{"a", []string{"c"}}, {"c", []string{"b"}}, {"b", nil}, {"core", nil}}, "core b c a", ""},
		{"without core the order is by dependencies and id",
			[]node{{"b", nil}, {"a", []string{"b"}}}, "b a", ""},
		{"a dependency that is not there is left out and named",
			[]node{{"core", nil}, {"a", []string{"gone"}}}, "core a",
			"pack a depends on pack gone, which is not installed or did not start"},
		{"a cycle is broken and named",
			[]node{{"a", []string{"b"}}, {"b", []string{"a"}}}, "b a",
			"packs depend on each other in a cycle: a -> b -> a"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			out, err := upgrade.Sort(c.nodes, func(n node) string { return n.id }, func(n node) []string { return n.deps })
			var ids []string
			for _, n := range out {
				ids = append(ids, n.id)
			}
			if got := strings.Join(ids, " "); got != c.want {
				t.Errorf("order %q, want %q", got, c.want)
			}
			switch {
			case c.err == "" && err != nil:
				t.Errorf("error %v, want none", err)
			case c.err != "" && (err == nil || err.Error() != c.err):
				t.Errorf("error %v, want %q", err, c.err)
			}
		})
	}
}
