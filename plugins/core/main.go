// Command core is the core pack of packhost: the users and the audit log
// every application on the host shares. It is a pack like any other, built
// against plugins/sdk alone, and is always upgraded first.
package main

import (
	"github.com/packhost/packhost/plugins/sdk"
)

// version is the core pack's release; `make build` writes it into the
// pack's manifest.
const version = "1.0.0"

// pack is the core pack's declaration: its tables and their histories.
var pack = sdk.Pack{
	ID:          "core",
	Version:     version,
	Description: "Users and the audit log shared by every pack.",
	Tables:      []sdk.Table{usersTable, auditTable},
	Pages:       pages(),
	Prefix:      "/",
}

func main() { sdk.Serve(pack) }
