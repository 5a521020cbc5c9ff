package cli

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/packhost/packhost/host/web"
)

func adminCmd(e env, args []string) (int, error) {
	return sub(e, "admin", args, map[string]func(env, []string) (int, error){
		"reset-token": adminResetTokenCmd,
	})
}

// adminResetTokenCmd replaces a lost (or leaked) admin token: it makes a
// new one, keeps only its hash in admin_token and prints it once. A
// serving host takes it at once and ends every admin session.
func adminResetTokenCmd(e env, args []string) (int, error) {
	var c common
	fs := newFlags(e, "admin reset-token")
	c.register(fs)
	if err := parse(fs, args); err != nil {
		return 0, err
	}
	if fs.NArg() > 0 {
		return 0, usageErr("host admin reset-token takes no arguments, got %q", fs.Args())
	}
	root, err := filepath.Abs(c.root)
	if err != nil {
		return 1, err
	}
	if fi, err := os.Stat(root); err != nil || !fi.IsDir() {
		return 1, fmt.Errorf("system directory %s does not exist or is not a directory; create it or pass --root", root)
	}
	tok, _, err := web.NewToken(root, false)
	if err != nil {
		return 1, err
	}
	fmt.Fprintf(e.stdout, "new admin token (shown once; only its hash is kept, in %s, mode 0600): %s\n", filepath.Join(root, web.TokenFile), tok)
	fmt.Fprintln(e.stdout, "The old token no longer logs in, and a serving host has ended every admin session.")
	return 0, nil
}
