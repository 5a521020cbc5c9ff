package web

import (
	"encoding/json"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"

	"github.com/packhost/packhost/internal/backupfile"
)

func TestTheBackupsPageListsWhatHostBackupReads(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "db-20261120T100000Z-notes")
	m := backupfile.Manifest{
		Format: backupfile.Format, PackID: "notes", PackVer: "1.4.0", Dialect: "sqlite", CreatedAt: "20261120T100000Z",
		Tables: []backupfile.Table{{Name: "notes", Version: 3, Columns: []string{"id"}, Rows: 12,
			SchemaFile: backupfile.SchemaFileName("notes"), RowsFile: backupfile.RowsFileName("notes"), Compression: backupfile.CompressionZstd}},
		Files: map[string]backupfile.FileSum{
			backupfile.SettingsFile: {Size: 10}, backupfile.RegistryFile: {Size: 20},
			backupfile.SchemaFileName("notes"): {Size: 30}, backupfile.RowsFileName("notes"): {Size: 40},
		},
	}
	data, _ := json.Marshal(m)
	for path, content := range map[string]string{
		filepath.Join(good, backupfile.ManifestFile):                          string(data),
		filepath.Join(dir, "db-20261121T100000Z-core", "core.rows.zst"):       "x", // no manifest: unfinished
		filepath.Join(dir, ".db-20261122T100000Z-core.partial", "x"):          "x", // being written
		filepath.Join(dir, "system-20261119T100000Z.zip"):                     "zipzip",
		filepath.Join(dir, ".system-123.zip.tmp"):                             "x",
		filepath.Join(dir, "notes.txt"):                                       "not a backup",
		filepath.Join(dir, "db-20261123T100000Z-core", "somewhere", "deeper"): "x",
	} {
		os.MkdirAll(filepath.Dir(path), 0o755)
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	list, err := listBackups(dir)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, b := range list {
		got = append(got, b.Kind+" "+b.Name+" "+b.PackID)
	}
	want := []string{
		"database db-20261123T100000Z-core core",
		"database db-20261121T100000Z-core core",
		"database db-20261120T100000Z-notes notes",
		"system system-20261119T100000Z.zip ",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("listed\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if n := list[2]; n.PackVer != "1.4.0" || n.Size != 100 || len(n.Tables) != 1 || n.Tables[0].Rows != 12 || n.Problem != "" {
		t.Fatalf("the good backup: %+v", n)
	}
	if p := list[1].Problem; !strings.Contains(p, "has no manifest.json; it is not a database backup, or the backup did not finish") {
		t.Fatalf("the unfinished backup's problem: %q", p)
	}
	if s := list[3]; s.Size != 6 || s.CreatedAt.Format("20060102T150405Z") != "20261119T100000Z" {
		t.Fatalf("the system backup: %+v", s)
	}

	rec := httptest.NewRecorder()
	(&Server{log: hclog.NewNullLogger()}).render(rec, httptest.NewRequest("GET", "/admin/backups", nil), 200, "backups", listData{Items: list})
	page := rec.Body.String()
	for _, w := range []string{"notes 1.4.0", "notes v3 (12)", "it is not a database backup, or the backup did not finish", "system-20261119T100000Z.zip", "2026-11-20 10:00:00 UTC"} {
		if !strings.Contains(page, w) {
			t.Errorf("the backups page lacks %q", w)
		}
	}
}
