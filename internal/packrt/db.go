package packrt

import (
	"context"

	"gorm.io/gorm"

	"github.com/packhost/packhost/internal/packerr"
)

type runtimeKey struct{}

func withRuntime(ctx context.Context, rt *runtime) context.Context {
	return context.WithValue(ctx, runtimeKey{}, rt)
}

// DB returns the pack's database connection for a page handler's request
// context (see plugins/sdk.DB).
func DB(ctx context.Context) (*gorm.DB, error) {
	rt, ok := ctx.Value(runtimeKey{}).(*runtime)
	if !ok {
		return nil, packerr.ErrNoDatabase
	}
	db, err := rt.database()
	if err != nil {
		return nil, err
	}
	return db.WithContext(ctx), nil
}
