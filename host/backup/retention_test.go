package backup

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/packhost/packhost/internal/naming"
)

func TestPruneKeepsTheNewestOfEachKindAndWhatAJournalNames(t *testing.T) {
	dir := t.TempDir()
	base := time.Date(2026, 11, 1, 10, 0, 0, 0, time.UTC)
	var names []string
	mk := func(name string, isDir bool) {
		p := filepath.Join(dir, name)
		if isDir {
			os.MkdirAll(p, 0o700)
			os.WriteFile(filepath.Join(p, "manifest.json"), []byte("{}"), 0o600)
		} else {
			os.WriteFile(p, []byte("zip"), 0o600)
		}
		names = append(names, name)
	}
	for i := 0; i < 7; i++ {
		mk("system-"+naming.Stamp(base.Add(time.Duration(i)*time.Hour))+".zip", false)
	}
	mk("system-"+naming.Stamp(base.Add(6*time.Hour))+".2.zip", false) // the newest: a second one in the same second
	for i := 0; i < 12; i++ {
		mk(Name(base.Add(time.Duration(i)*time.Minute), "notes"), true)
	}
	mk(Name(base, "core"), true)
	mk(".db-20261101T100000Z-notes.partial", true) // being written: not a backup
	mk("install-journal-20261101T100000Z.json", false)
	protected := Name(base, "notes") // the oldest notes backup, named by a journal

	r := Retention{SystemBackups: 5, DatabaseBackupsPerPack: 10}
	planned, err := Prune(dir, r, func(n string) bool { return n == protected }, true)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		if _, err := os.Stat(filepath.Join(dir, n)); err != nil {
			t.Fatalf("a dry run removed %s", n)
		}
	}
	removed, err := Prune(dir, r, func(n string) bool { return n == protected }, false)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, p := range removed {
		got = append(got, p.Name)
	}
	want := []string{
		Name(base.Add(time.Minute), "notes"),
		"system-" + naming.Stamp(base) + ".zip",
		"system-" + naming.Stamp(base.Add(time.Hour)) + ".zip",
		"system-" + naming.Stamp(base.Add(2*time.Hour)) + ".zip",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("removed\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if len(planned) != len(removed) {
		t.Errorf("the dry run planned %d, the prune removed %d", len(planned), len(removed))
	}
	for _, n := range names {
		_, err := os.Stat(filepath.Join(dir, n))
		gone := strings.Contains(strings.Join(want, "\n"), n)
		if gone != os.IsNotExist(err) {
			t.Errorf("%s: removed %v, want %v", n, os.IsNotExist(err), gone)
		}
	}
	if _, err := Prune(dir, Retention{SystemBackups: 0, DatabaseBackupsPerPack: 3}, nil, false); err == nil {
		t.Error("a retention of no system backup was accepted")
	}
}
