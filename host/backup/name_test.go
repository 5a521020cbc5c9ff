package backup

import (
	"testing"
	"time"
)

func TestBackupNamesReadBackEvenForPackIDsEndingInDigits(t *testing.T) {
	at := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	cases := []struct {
		name string
		id   string
		n    int
	}{
		{"db-20261125T100000Z-notes", "notes", 1},
		{"db-20261125T100000Z.2-notes", "notes", 2},
		{"db-20261125T100000Z-notes-2", "notes-2", 1},
		{"db-20261125T100000Z.3-2-notes", "2-notes", 3},
	}
	for _, c := range cases {
		if got := NameN(at, c.id, c.n); got != c.name {
			t.Errorf("NameN(%s, %d) = %s, want %s", c.id, c.n, got, c.name)
		}
		gotAt, n, id, ok := ParseName(c.name)
		if !ok || !gotAt.Equal(at) || n != c.n || id != c.id {
			t.Errorf("ParseName(%s) = %v %d %q %v, want %v %d %q", c.name, gotAt, n, id, ok, at, c.n, c.id)
		}
		if IsPartial(c.name) || !IsPartial("."+c.name+".partial") {
			t.Errorf("IsPartial is wrong about %s", c.name)
		}
	}
	for _, bad := range []string{"db-20261125T100000Z.0-notes", "db-20261125T100000Z.100-notes", "db-2026-notes", "db-20261125T100000Z-"} {
		if _, _, _, ok := ParseName(bad); ok {
			t.Errorf("ParseName(%s) accepted a name that is not a backup's", bad)
		}
	}
}
