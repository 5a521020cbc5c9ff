package recovery

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/packhost/packhost/internal/meta"
)

func TestAJournalOfTheFirstFormatIsReadWithItsRows(t *testing.T) {
	root := t.TempDir()
	data, err := os.ReadFile(filepath.Join("testdata", "journal-v1.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(Path(root), data, 0o644); err != nil {
		t.Fatal(err)
	}
	j, err := Read(root)
	if err != nil {
		t.Fatal(err)
	}
	if j.State != StateUpgrading || j.DBBackup != "db-20261120T101500Z-notes" || len(j.Packs) != 1 {
		t.Fatalf("journal %+v", j)
	}
	n := j.Packs[0].New
	at := time.Date(2026, 11, 19, 8, 0, 0, 0, time.UTC)
	if n == nil || len(n.Settings) != 1 || len(n.Registry) != 1 {
		t.Fatalf("new_pack_db %+v", n)
	}
	if want := (meta.Setting{PackID: "memo", Key: "greeting", Value: "hi", UpdatedAt: at}); n.Settings[0] != want {
		t.Errorf("setting %+v, want %+v", n.Settings[0], want)
	}
	if r := n.Registry[0]; r.TableName_ != "memo" || r.TableVersion != 1 || r.PackID != "memo" || r.SchemaText != "table memo\n" || !r.CreatedAt.Equal(at) {
		t.Errorf("registration %+v", r)
	}
}

func TestAJournalIsWrittenWithItsFormatAndTaggedRows(t *testing.T) {
	root := t.TempDir()
	j := &Journal{Stamp: "20261120T101500Z", State: StateStaging, Packs: []JournalEntry{{ID: "memo", Version: "1.1.0",
		Zip: "memo-1.1.0.zip", Stage: ".memo.new-20261120T101500Z-1", Old: ".memo.old-20261120T101500Z-1",
		New: &NewPackDB{Created: []string{"memo"}, Settings: []meta.Setting{{PackID: "memo", Key: "k", Value: "v"}}}}}}
	if err := j.Write(root); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(Path(root))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"format": "` + JournalFormat + `"`, `"pack_id": "memo"`, `"key": "k"`} {
		if !strings.Contains(string(data), want) {
			t.Errorf("the journal lacks %s:\n%s", want, data)
		}
	}
	back, err := Read(root)
	if err != nil {
		t.Fatal(err)
	}
	if back.Packs[0].New.Settings[0].Value != "v" {
		t.Errorf("read back %+v", back.Packs[0].New)
	}
}

func TestAJournalOfAnUnknownFormatIsRefused(t *testing.T) {
	root := t.TempDir()
	if err := os.WriteFile(Path(root), []byte(`{"format": "packhost-install-journal/9", "state": "staging"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := Read(root)
	if err == nil || !strings.Contains(err.Error(), `format "packhost-install-journal/9"`) {
		t.Fatalf("err = %v", err)
	}
}

func TestAJournalWithNamesThisHostDoesNotWriteIsRefused(t *testing.T) {
	good := func() *Journal {
		return &Journal{Stamp: "20261120T101500Z", State: StateUpgrading, Packs: []JournalEntry{{ID: "memo", Version: "1.1.0",
			Zip: "memo-1.1.0.zip", Stage: ".memo.new-20261120T101500Z-42", Old: ".memo.old-20261120T101500Z-42"}}}
	}
	for _, tc := range []struct {
		name   string
		change func(j *Journal)
		names  string
	}{
		{"a stage that climbs out of the packs folder", func(j *Journal) { j.Packs[0].Stage = "../../../victim" }, `directory "../../../victim"`},
		{"a stage of another pack", func(j *Journal) { j.Packs[0].Stage = ".core.new-20261120T101500Z" }, `directory ".core.new-20261120T101500Z"`},
		{"an old directory with a dot-dot suffix", func(j *Journal) { j.Packs[0].Old = ".memo.old-..x" }, `directory ".memo.old-..x"`},
		{"a pack id with a slash", func(j *Journal) { j.Packs[0].ID = "../memo" }, `pack "../memo"`},
		{"a zip path", func(j *Journal) { j.Packs[0].Zip = "../../etc/passwd.zip" }, `zip "../../etc/passwd.zip"`},
		{"a created table that is not a table name", func(j *Journal) {
			j.Packs[0].New = &NewPackDB{Created: []string{"users; DROP TABLE x"}}
		}, `table "users; DROP TABLE x"`},
		{"a database backup that is not a backup name", func(j *Journal) { j.DBBackup = "../../secrets" }, `database backup "../../secrets"`},
		{"a system backup outside Updates_Backups' names", func(j *Journal) { j.SystemBackup = "/etc/shadow" }, `system backup "/etc/shadow"`},
		{"an unknown state", func(j *Journal) { j.State = "rm -rf" }, `state "rm -rf"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			j := good()
			tc.change(j)
			if err := j.Write(root); err != nil {
				t.Fatal(err)
			}
			_, err := Read(root)
			if err == nil || !strings.Contains(err.Error(), tc.names) || !strings.Contains(err.Error(), "nothing was acted on") {
				t.Fatalf("err = %v, want one naming %s", err, tc.names)
			}
		})
	}
	root := t.TempDir()
	if err := good().Write(root); err != nil {
		t.Fatal(err)
	}
	if _, err := Read(root); err != nil {
		t.Fatalf("a journal as the installer writes it is refused: %v", err)
	}
}
