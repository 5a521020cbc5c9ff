// Command webpack is the web test pack: demopages served under /web/.
package main

import (
	"os"
	"path/filepath"

	"github.com/packhost/packhost/host/web/internal/demopages"
	"github.com/packhost/packhost/plugins/sdk"
)

func main() {
	dir := ""
	if exe, err := os.Executable(); err == nil {
		dir = filepath.Dir(exe)
	}
	sdk.Serve(sdk.Pack{
		ID:          "web",
		Version:     "1.0.0",
		Description: "Pages for the host's web tests.",
		Pages:       demopages.Handler(dir),
		Prefix:      demopages.Prefix,
	})
}
