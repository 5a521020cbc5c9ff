package recovery

import (
	"encoding/json"
	"time"

	"github.com/packhost/packhost/internal/meta"
)

// readV1 reads a journal of the first format, written before the format
// was tagged: the same as JournalFormat's but for the pack_settings and
// schema_registry rows of new_pack_db, which were written with their Go
// field names.
func readV1(data []byte, j *Journal) error {
	type settingV1 struct {
		PackID    string
		Key       string
		Value     string
		UpdatedAt time.Time
	}
	type registrationV1 struct {
		TableName_   string
		TableVersion int
		PackID       string
		SchemaText   string
		CreatedAt    time.Time
	}
	type newPackDBV1 struct {
		Replaced bool             `json:"replaced,omitempty"`
		Created  []string         `json:"created"`
		Kept     []string         `json:"kept,omitempty"`
		Settings []settingV1      `json:"settings,omitempty"`
		Registry []registrationV1 `json:"registry,omitempty"`
	}
	type entryV1 struct {
		JournalEntry
		New *newPackDBV1 `json:"new_pack_db,omitempty"`
	}
	var v1 struct {
		Journal
		Packs []entryV1 `json:"packs"`
	}
	if err := json.Unmarshal(data, &v1); err != nil {
		return err
	}
	*j = v1.Journal
	j.Packs = nil
	for _, e := range v1.Packs {
		je := e.JournalEntry
		if n := e.New; n != nil {
			je.New = &NewPackDB{Replaced: n.Replaced, Created: n.Created, Kept: n.Kept}
			for _, s := range n.Settings {
				je.New.Settings = append(je.New.Settings, meta.Setting{PackID: s.PackID, Key: s.Key, Value: s.Value, UpdatedAt: s.UpdatedAt})
			}
			for _, r := range n.Registry {
				je.New.Registry = append(je.New.Registry, meta.Registration{TableName_: r.TableName_, TableVersion: r.TableVersion,
					PackID: r.PackID, SchemaText: r.SchemaText, CreatedAt: r.CreatedAt})
			}
		}
		j.Packs = append(j.Packs, je)
	}
	return nil
}
