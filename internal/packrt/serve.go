package packrt

import (
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"

	"github.com/packhost/packhost/internal/dbconn"
	"github.com/packhost/packhost/internal/packpb"
	"github.com/packhost/packhost/internal/wire"
)

// Serve runs the pack until the host stops it (see plugins/sdk.Serve). It
// does not return: it exits the process when the host is done with it, or
// with status 1 and the reason on stderr when the spec is invalid or the
// binary was not started by a host.
func Serve(p Spec) {
	logger := hclog.New(&hclog.LoggerOptions{
		Name:       p.ID,
		Output:     os.Stderr,
		JSONFormat: true,
		Level:      hclog.LevelFromString(os.Getenv(wire.EnvLogLevel)),
	})
	if err := p.Validate(); err != nil {
		fmt.Fprintf(os.Stderr, "pack %s cannot start: %v\n", p.ID, err)
		os.Exit(1)
	}
	if os.Getenv(wire.Handshake.MagicCookieKey) != wire.Handshake.MagicCookieValue {
		fmt.Fprintf(os.Stderr, "%s %s is a packhost pack: install it into a system directory and run `host run`; it does not run on its own.\n", p.ID, p.Version)
		os.Exit(1)
	}
	if want := os.Getenv(wire.EnvPackID); want != "" && want != p.ID {
		fmt.Fprintf(os.Stderr, "pack binary declares id %q but is installed as %q; rebuild the pack or fix its manifest\n", p.ID, want)
		os.Exit(1)
	}
	watchParent(logger)

	target, hasDB := dbconn.FromEnv(os.Getenv)
	rt := newRuntime(p, logger, target, hasDB)
	defer rt.close()
	// The pages listen before the handshake, so they answer as soon as the
	// host knows the pack.
	pages, err := listenPages(rt, os.Getenv(wire.EnvPagesSocket))
	if err != nil {
		fmt.Fprintf(os.Stderr, "pack %s cannot start: %v\n", p.ID, err)
		os.Exit(1)
	}
	defer pages.close()
	srv := &server{rt: rt}
	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig: wire.Handshake,
		Plugins:         wire.PluginSet(srv),
		GRPCServer:      plugin.DefaultGRPCServer,
		Logger:          logger,
	})
}

// NewServer returns the pack service for p on the database target (none
// when hasDB is false) and a function that closes its connections. Serve
// runs it behind go-plugin; the test kit runs it in-process.
func NewServer(p Spec, log hclog.Logger, target dbconn.Target, hasDB bool) (packpb.PackServer, func()) {
	rt := newRuntime(p, log, target, hasDB)
	return &server{rt: rt}, rt.close
}

// watchParent exits the pack when the host that started it is gone, even
// when the host was killed with SIGKILL and had no chance to stop it. (On
// Linux the host also asks the kernel for SIGKILL on its death; this covers
// the other systems and the cases where that signal is lost.)
func watchParent(logger hclog.Logger) {
	hostPID, err := strconv.Atoi(os.Getenv(wire.EnvHostPID))
	if err != nil || hostPID <= 1 {
		return
	}
	go func() {
		for {
			if os.Getppid() != hostPID {
				logger.Error("host process is gone; exiting", "host_pid", hostPID)
				os.Exit(3)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}()
}
