// Command hang is a test pack that never completes its handshake.
package main

import (
	"fmt"
	"os"
	"time"

	"github.com/packhost/packhost/plugins/sdk"
)

var pack = sdk.Pack{ID: "hang", Version: "1.0.0"}

func main() {
	if os.Getenv("PACKHOST_PACK_ID") != "" {
		fmt.Fprintln(os.Stderr, "hang: waiting for a lock that never comes (test pack)")
		time.Sleep(time.Hour)
	}
	sdk.Serve(pack)
}
