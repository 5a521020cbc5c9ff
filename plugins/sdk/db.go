package sdk

import (
	"context"

	"gorm.io/gorm"
)

type runtimeKey struct{}

func withRuntime(ctx context.Context, rt *runtime) context.Context {
	return context.WithValue(ctx, runtimeKey{}, rt)
}

// DB returns the pack's database connection, for page handlers: pass the
// request's context (r.Context()). The connection is the one the host
// handed the pack; queries made with it end when the request does. It
// returns ErrNoDatabase when the host handed none.
func DB(ctx context.Context) (*gorm.DB, error) {
	rt, ok := ctx.Value(runtimeKey{}).(*runtime)
	if !ok {
		return nil, ErrNoDatabase
	}
	db, err := rt.database()
	if err != nil {
		return nil, err
	}
	return db.WithContext(ctx), nil
}
