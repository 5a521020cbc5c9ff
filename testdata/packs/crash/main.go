// Command crash is a test pack that fails before its handshake, the way a
// pack with a broken configuration would.
package main

import (
	"fmt"
	"os"

	"github.com/packhost/packhost/plugins/sdk"
)

var pack = sdk.Pack{ID: "crash", Version: "1.0.0"}

func main() {
	if os.Getenv("PACKHOST_PACK_ID") != "" {
		fmt.Fprintln(os.Stderr, "crash: cannot read settings: permission denied (test pack)")
		os.Exit(7)
	}
	// Installing it (Describe) must work.
	sdk.Serve(pack)
}
