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
