package install

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/packhost/packhost/host/backup"
	"github.com/packhost/packhost/host/packs"
	"github.com/packhost/packhost/host/system"
	"github.com/packhost/packhost/internal/dbconn"
	"github.com/packhost/packhost/internal/meta"
)

// restoresOnlyTheInstallsBackups takes the install's backup of notes in
// the system s, then, in the same second, a backup of core (as `host db
// backup` would) and a second one of notes after a row was added: both
// get names of their own, and restoring the install's token brings back
// notes as the first backup holds it and leaves core alone.
func restoresOnlyTheInstallsBackups(t *testing.T, s sys) {
	s.t = t
	target := s.target()
	l, err := packs.NewLauncher(packs.Config{DB: target, HasDB: true})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	running, err := startInstalled(t.Context(), l, s.root, []string{"core", "notes"}, hclog.NewNullLogger())
	if err != nil {
		t.Fatal(err)
	}
	conn, err := dbconn.Open(target)
	if err != nil {
		t.Fatal(err)
	}
	defer dbconn.Close(conn)
	exec := func(sql string, args ...any) {
		t.Helper()
		if err := conn.Exec(sql, args...).Error; err != nil {
			t.Fatal(err)
		}
	}

	at := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	d := PackDB{Root: s.root, Now: func() time.Time { return at }, Target: target, DB: conn}
	token, err := d.Backup(t.Context(), running, []string{"notes"})
	if err != nil {
		t.Fatal(err)
	}
	if token != "db-20261125T100000Z-notes" {
		t.Errorf("token %q, want the backup's name", token)
	}
	dir := filepath.Join(s.root, system.BackupsDir)
	if _, err := backup.Pack(t.Context(), dir, findPack(running, "core"), at, nil, nil); err != nil {
		t.Fatal(err)
	}
	exec("INSERT INTO notes (id, body) VALUES (1, 'written after the first backup')")
	second, err := backup.Pack(t.Context(), dir, findPack(running, "notes"), at, nil, nil)
	if err != nil {
		t.Fatalf("a second backup of notes in the same second: %v", err)
	}
	if filepath.Base(second) != "db-20261125T100000Z.2-notes" {
		t.Errorf("second backup of notes named %s", filepath.Base(second))
	}
	list, err := backup.List(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, b := range list {
		if !b.CreatedAt.Equal(at) {
			continue // the install's own backups
		}
		if b.Problem != "" {
			t.Errorf("%s: %s", b.Name, b.Problem)
		}
		names = append(names, b.Name+" "+b.PackID)
	}
	want := "db-20261125T100000Z-core core, db-20261125T100000Z.2-notes notes, db-20261125T100000Z-notes notes"
	if got := strings.Join(names, ", "); got != want {
		t.Errorf("backup.List: %s\nwant %s", got, want)
	}

	// Core's settings change after its backup; a restore of the
	// install's token must not put them back.
	exec("INSERT INTO pack_settings (pack_id, key, value, updated_at) VALUES ('core', 'after-backup', 'kept', ?)", time.Now().UTC())
	if err := d.Restore(t.Context(), running, token, []string{"notes"}); err != nil {
		t.Fatal(err)
	}
	var n int64
	if err := conn.Table("notes").Count(&n).Error; err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Errorf("notes has %d rows after the restore, want the first backup's 0", n)
	}
	var kept meta.Setting
	if err := conn.Where("pack_id = 'core' AND key = 'after-backup'").First(&kept).Error; err != nil {
		t.Errorf("core's setting written after its backup: %v; the restore touched core", err)
	}
}
