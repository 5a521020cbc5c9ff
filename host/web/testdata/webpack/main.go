// Command webpack is the web test pack: demopages served under /web/.
package main

import (
	"os"
	"path/filepath"

	"github.com/packhost/packhost/host/web/internal/demopages"
	"github.com/packhost/packhost/plugins/sdk"
)

// id is the pack's id; a test builds a second pack with the same pages
// (and so the same prefix) with -X main.id=OTHER.
var id = "web"

func main() {
	dir := ""
	if exe, err := os.Executable(); err == nil {
		dir = filepath.Dir(exe)
	}
	sdk.Serve(sdk.Pack{
		ID:          id,
		Version:     "1.0.0",
		Description: "Pages for the host's web tests.",
		Pages:       demopages.Handler(dir),
		Prefix:      demopages.Prefix,
	})
}
