// Command host is the packhost application server: it owns a system
// directory, launches its packs, keeps their code and tables up to date and
// serves HTTP. `host help` lists the commands.
package main

import (
	"os"

	"github.com/packhost/packhost/host/cli"
)

func main() {
	os.Exit(cli.Main(os.Args[1:], os.Stdout, os.Stderr))
}
