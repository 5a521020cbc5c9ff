// Command stall is a test pack whose CheckSchema never answers, not even
// when the host gives up on it: a pack wedged on a lock, or a hostile one.
// It is built on the pack runtime directly (testdata may reach internal
// packages) so that one call can be made to hang.
package main

import (
	"context"
	"os"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"

	"github.com/packhost/packhost/internal/dbconn"
	"github.com/packhost/packhost/internal/packpb"
	"github.com/packhost/packhost/internal/packrt"
	"github.com/packhost/packhost/internal/wire"
	"github.com/packhost/packhost/plugins/sdk"
)

var pack = sdk.Pack{
	ID: "stall", Version: "1.0.0", Description: "A pack whose schema check never answers (test pack).",
	Tables: []sdk.Table{{Name: "stall_items", Steps: []sdk.Step{{Summary: "creates stall_items", Up: sdk.SQL(
		`CREATE TABLE stall_items (id integer PRIMARY KEY)`)}}}},
}

type stalling struct{ packpb.PackServer }

func (stalling) CheckSchema(context.Context, *packpb.CheckSchemaRequest) (*packpb.CheckSchemaResponse, error) {
	select {}
}

func main() {
	target, hasDB := dbconn.FromEnv(os.Getenv)
	srv, closeDB := packrt.NewServer(sdk.Spec(pack), hclog.NewNullLogger(), target, hasDB)
	defer closeDB()
	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig: wire.Handshake,
		Plugins:         wire.PluginSet(stalling{srv}),
		GRPCServer:      plugin.DefaultGRPCServer,
	})
}
