// Package wire holds what the host and the SDK must agree on to talk: the
// go-plugin handshake, the plugin name and the environment a pack is
// started with.
package wire

import (
	"context"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	"github.com/packhost/packhost/internal/packpb"
)

// Handshake is checked by both sides before anything else; a binary started
// by hand (not by the host) refuses to run and says so.
var Handshake = plugin.HandshakeConfig{
	ProtocolVersion:  1,
	MagicCookieKey:   "PACKHOST_PACK",
	MagicCookieValue: "f1c4a0b6-packhost-pack-protocol",
}

// PluginName is the single plugin every pack binary serves.
const PluginName = "pack"

// Environment handed to every pack besides the database (see dbconn).
const (
	// EnvPackID is the pack id of the installed manifest; the SDK refuses to
	// serve when its own id differs.
	EnvPackID = "PACKHOST_PACK_ID"
	// EnvHostPID is the host's process id; the SDK exits when its parent
	// is no longer that process.
	EnvHostPID = "PACKHOST_HOST_PID"
	// EnvLogLevel is the hclog level the pack logs at.
	EnvLogLevel = "PACKHOST_LOG_LEVEL"
	// EnvUnixSocketDir is go-plugin's variable naming the directory the
	// pack creates its socket in. The host points it at a 0700 directory.
	EnvUnixSocketDir = "PLUGIN_UNIX_SOCKET_DIR"
	// EnvPagesSocket is the path of the unix socket, inside that same
	// directory, on which a pack with pages serves them as plain HTTP. The
	// host's proxy forwards the requests under the pack's prefix there.
	EnvPagesSocket = "PACKHOST_PAGES_SOCKET"
)

// HeaderRemoteAddr carries the address of the client the host's proxy
// answers (host:port) on every request it forwards to a pack's pages. The
// host sets it, replacing whatever a client sent; the pack's runtime moves
// it into http.Request.RemoteAddr and removes it, so a page handler sees
// the client as if it were served directly.
const HeaderRemoteAddr = "X-Packhost-Remote-Addr"

// Plugin is the go-plugin definition of a pack, served by the SDK (Server
// set) and dispensed by the host (Impl nil).
type Plugin struct {
	plugin.NetRPCUnsupportedPlugin
	Impl packpb.PackServer
}

// GRPCServer registers the pack service.
func (p *Plugin) GRPCServer(_ *plugin.GRPCBroker, s *grpc.Server) error {
	packpb.RegisterPackServer(s, p.Impl)
	return nil
}

// GRPCClient returns the generated client; the host wraps it.
func (p *Plugin) GRPCClient(_ context.Context, _ *plugin.GRPCBroker, c *grpc.ClientConn) (any, error) {
	return packpb.NewPackClient(c), nil
}

// PluginSet is the set both sides use.
func PluginSet(server packpb.PackServer) plugin.PluginSet {
	return plugin.PluginSet{PluginName: &Plugin{Impl: server}}
}
