package sdk

import "github.com/packhost/packhost/internal/packrt"

// Serve runs the pack until the host stops it. It is the whole of a pack's
// main function:
//
//	func main() { sdk.Serve(pack) }
//
// Serve owns the handshake with the host, the gRPC server, logging (hclog
// to stderr, which the host re-logs under the pack's id), the database
// connection the host hands over in the environment, and the mapping of
// errors to codes the host understands. It does not return: it exits the
// process when the host is done with it, or with status 1 and the reason on
// stderr when the Pack is invalid or the binary was not started by a host.
func Serve(p Pack) { packrt.Serve(Spec(p)) }
