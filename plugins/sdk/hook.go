package sdk

import (
	"fmt"

	"github.com/hashicorp/go-hclog"

	"github.com/packhost/packhost/internal/dbconn"
	"github.com/packhost/packhost/internal/packpb"
	"github.com/packhost/packhost/internal/sdkhook"
)

// The test kit's way in: an exception to "no init globals", because the
// alternative is exporting the server to every pack author.
func init() {
	sdkhook.NewServer = func(v any, target dbconn.Target) (packpb.PackServer, func(), error) {
		p, ok := v.(Pack)
		if !ok {
			return nil, nil, fmt.Errorf("sdktest: %T is not an sdk.Pack", v)
		}
		if err := p.Validate(); err != nil {
			return nil, nil, err
		}
		rt := newRuntime(p, hclog.NewNullLogger(), target, target.Driver != "")
		return &server{rt: rt}, rt.close, nil
	}
}
