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

// Replaying reports whether a step runs on a scratch database instead of
// the site's data. The host and `host pack build` learn the schema of
// every version of a table by replaying its steps on an empty scratch
// database that is thrown away (in memory on SQLite, a schema in a
// rolled-back transaction on PostgreSQL). Database work runs as usual
// there; a step that also acts outside the database (writes a file, sends
// a message) skips that part when Replaying(ctx) is true.
func Replaying(ctx context.Context) bool { return packrt.Replaying(ctx) }
