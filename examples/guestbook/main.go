// Command guestbook is an example third-party pack: a guest book whose
// entries table has two released versions. Version 2 splits the single
// name column into first_name and last_name and fills them from the old
// column: a data migration, not only DDL.
//
// It imports nothing of packhost but the SDK.
package main

import (
	"github.com/packhost/packhost/plugins/sdk"
)

// version is the pack's release, written into its manifest by
// `host pack build`.
const version = "2.0.0"

var pack = sdk.Pack{
	ID:          "guestbook",
	Version:     version,
	Description: "A guest book: visitors leave their name and a message.",
	Tables:      []sdk.Table{entries},
	DependsOn:   []string{"core"},
	Pages:       pages(),
	Prefix:      "/guestbook/",
}

func main() { sdk.Serve(pack) }
