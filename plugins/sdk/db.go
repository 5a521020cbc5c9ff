package sdk

import (
	"context"

	"gorm.io/gorm"

	"github.com/packhost/packhost/internal/packrt"
)

// DB returns the pack's database connection, for page handlers: pass the
// request's context (r.Context()). The connection is the one the host
// handed the pack; queries made with it end when the request does. It
// returns ErrNoDatabase when the host handed none.
func DB(ctx context.Context) (*gorm.DB, error) { return packrt.DB(ctx) }
