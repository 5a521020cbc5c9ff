package sdk_test

import (
	"context"
	"fmt"
	"log"

	"gorm.io/gorm"

	"github.com/packhost/packhost/plugins/sdk"
)

// A pack with one table at version 2. In a real pack, main ends with
// sdk.Serve(pack).
func Example() {
	pack := sdk.Pack{
		ID:      "guestbook",
		Version: "1.1.0",
		Tables: []sdk.Table{{
			Name: "entries",
			Steps: []sdk.Step{
				{Summary: "creates entries", Up: sdk.SQL(
					`CREATE TABLE entries (id integer PRIMARY KEY, body text NOT NULL)`)},
				{Summary: "adds entries.author", Up: sdk.SQL(
					`ALTER TABLE entries ADD COLUMN author text NOT NULL DEFAULT ''`)},
			},
		}},
	}
	if err := pack.Validate(); err != nil {
		fmt.Println(err)
		return
	}
	t := pack.Tables[0]
	fmt.Printf("%s %s: table %s at version %d\n", pack.ID, pack.Version, t.Name, t.Version())
	// Output: guestbook 1.1.0: table entries at version 2
}

// Validate names the first problem the host would refuse the pack for.
func ExamplePack_Validate() {
	err := sdk.Pack{ID: "Guest Book", Version: "1.0.0"}.Validate()
	fmt.Println(err)
	// Output: pack id "Guest Book": must match ^[a-z0-9][a-z0-9._-]{1,63}$
}

// A step that tells someone outside the database what it did skips that
// when it runs on a scratch database, where the host and `host pack build`
// replay every step to learn each version's schema.
func ExampleReplaying() {
	step := sdk.Step{
		Summary: "adds entries.author",
		Up: func(ctx context.Context, tx *gorm.DB) error {
			if err := tx.Exec(`ALTER TABLE entries ADD COLUMN author text NOT NULL DEFAULT ''`).Error; err != nil {
				return err
			}
			if !sdk.Replaying(ctx) {
				log.Print("entries now have authors") // to the pack's log, once, on the site
			}
			return nil
		},
	}
	fmt.Println(step.Summary, "replaying:", sdk.Replaying(context.Background()))
	// Output: adds entries.author replaying: false
}
