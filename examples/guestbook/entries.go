package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"gorm.io/gorm"

	"github.com/packhost/packhost/plugins/sdk"
)

// entries is the guest book's table. Its steps are never edited once
// released; each change is a new step.
var entries = sdk.Table{
	Name: "entries",
	Steps: []sdk.Step{
		// Version 1 (guestbook 1.0.0).
		{Summary: "creates entries (id, name, message, created_at)", Up: sdk.AutoMigrate(&entryV1{})},
		// Version 2 (guestbook 2.0.0).
		{Summary: "splits entries.name into first_name and last_name", Destructive: true, Up: splitNames},
	},
}

// The table as each version has it. A released model is never edited.
type entryV1 struct {
	ID        int64     `gorm:"primaryKey"`
	Name      string    `gorm:"size:200;not null"`
	Message   string    `gorm:"not null"`
	CreatedAt time.Time `gorm:"not null"`
}

func (entryV1) TableName() string { return "entries" }

type entryV2 struct {
	ID        int64     `gorm:"primaryKey"`
	FirstName string    `gorm:"size:100;not null;default:''"`
	LastName  string    `gorm:"size:100;not null;default:''"`
	Message   string    `gorm:"not null"`
	CreatedAt time.Time `gorm:"not null"`
}

func (entryV2) TableName() string { return "entries" }

// splitNames adds the two columns, fills them from name in batches (so a
// large table never sits in memory), then drops name.
func splitNames(ctx context.Context, tx *gorm.DB) error {
	m := tx.Migrator()
	for _, field := range []string{"FirstName", "LastName"} {
		if err := m.AddColumn(&entryV2{}, field); err != nil {
			return err
		}
	}
	type row struct {
		ID   int64
		Name string
	}
	var batch []row
	err := tx.Table("entries").Select("id, name").Order("id").
		FindInBatches(&batch, 1000, func(b *gorm.DB, _ int) error {
			for _, r := range batch {
				first, last := splitName(r.Name)
				if err := tx.Exec(`UPDATE entries SET first_name = ?, last_name = ? WHERE id = ?`, first, last, r.ID).Error; err != nil {
					return fmt.Errorf("entry %d: %w", r.ID, err)
				}
			}
			return nil
		}).Error
	if err != nil {
		return err
	}
	return m.DropColumn(&entryV1{}, "Name")
}

// splitName puts the last word in last_name and the rest in first_name:
// "Ada King Lovelace" -> "Ada King", "Lovelace"; "Cher" -> "Cher", "".
func splitName(name string) (first, last string) {
	f := strings.Fields(name)
	switch len(f) {
	case 0:
		return "", ""
	case 1:
		return f[0], ""
	}
	return strings.Join(f[:len(f)-1], " "), f[len(f)-1]
}
