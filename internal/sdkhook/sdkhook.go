// Package sdkhook lets the in-process test kit (plugins/sdk/sdktest) build
// the gRPC server of a pack value without the SDK exporting it to pack
// authors. Package sdk sets NewServer when it is initialised; sdktest
// imports sdk, so the hook is always set when sdktest runs.
package sdkhook

import (
	"github.com/packhost/packhost/internal/dbconn"
	"github.com/packhost/packhost/internal/packpb"
)

// NewServer returns the pack service for pack (an sdk.Pack) on the given
// database, and a function that closes its connections.
var NewServer func(pack any, target dbconn.Target) (packpb.PackServer, func(), error)
