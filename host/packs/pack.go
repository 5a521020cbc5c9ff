package packs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/hashicorp/go-plugin"

	"github.com/packhost/packhost/internal/packerr"
	"github.com/packhost/packhost/internal/packpb"
)

// Pack is a running pack.
type Pack struct {
	Installed
	// Info is what the pack said of itself at start.
	Info *packpb.DescribeResponse

	name       string
	client     *plugin.Client
	rpc        packpb.PackClient
	tail       *tail
	rpcTimeout time.Duration
	// pagesSocket is where the pack serves its pages, when it has any.
	pagesSocket string
}

// ErrNotAnswering is wrapped by the error of a short call (CheckSchema,
// Repair) that a pack did not answer within its deadline.
var ErrNotAnswering = errors.New("the pack is not answering")

// deadline bounds a short call to the pack.
func (p *Pack) deadline(ctx context.Context) (context.Context, context.CancelFunc) {
	if p.rpcTimeout <= 0 {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, p.rpcTimeout)
}

// short maps the error of a short call: a missed deadline becomes
// ErrNotAnswering, naming the pack and the deadline.
func (p *Pack) short(ctx context.Context, op string, err error) error {
	if err != nil && ctx.Err() == context.DeadlineExceeded {
		return fmt.Errorf("pack %s: %s: %w within %s (--rpc-timeout)", p.name, op, ErrNotAnswering, p.rpcTimeout)
	}
	return p.err(op, err)
}

// RPC is the raw client.
func (p *Pack) RPC() packpb.PackClient { return p.rpc }

// PagesSocket is the unix socket on which the pack serves its pages as
// plain HTTP, when it has the "http" capability (see wire.EnvPagesSocket).
// It lies in the launcher's private socket directory.
func (p *Pack) PagesSocket() string { return p.pagesSocket }

// Addr is the socket the pack listens on.
func (p *Pack) Addr() net.Addr {
	if rc := p.client.ReattachConfig(); rc != nil {
		return rc.Addr
	}
	return nil
}

// PID is the pack process's id (0 when it is not running).
func (p *Pack) PID() int {
	if rc := p.client.ReattachConfig(); rc != nil {
		return rc.Pid
	}
	return 0
}

// Exited reports whether the pack's process has ended.
func (p *Pack) Exited() bool { return p.client.Exited() }

// Stop ends the pack's process (gracefully, then by force).
func (p *Pack) Stop() { p.client.Kill() }

// err maps an error from the pack back to its sentinel and, when the pack
// has died, adds its last stderr lines.
func (p *Pack) err(op string, err error) error {
	if err == nil {
		return nil
	}
	err = packerr.FromStatus(err)
	if p.client.Exited() {
		return fmt.Errorf("pack %s: %s: %w (the pack exited; last stderr lines:\n%s)", p.name, op, err, p.tail.String())
	}
	return err
}

// CheckSchema reports the state of the named tables (all when none).
func (p *Pack) CheckSchema(ctx context.Context, tables ...string) ([]*packpb.TableStatus, error) {
	dctx, cancel := p.deadline(ctx)
	defer cancel()
	resp, err := p.rpc.CheckSchema(dctx, &packpb.CheckSchemaRequest{Tables: tables})
	if err != nil {
		return nil, p.short(dctx, "check schema", err)
	}
	return resp.Tables, nil
}

// Upgrade runs the pack's upgrade steps, calling progress for each event.
func (p *Pack) Upgrade(ctx context.Context, tables []string, progress func(*packpb.Progress)) error {
	stream, err := p.rpc.Upgrade(ctx, &packpb.UpgradeRequest{Tables: tables})
	if err != nil {
		return p.err("upgrade", err)
	}
	return p.err("upgrade", drain(stream, progress))
}

// Backup writes the pack's tables to dir.
func (p *Pack) Backup(ctx context.Context, req *packpb.BackupRequest, progress func(*packpb.Progress)) error {
	stream, err := p.rpc.Backup(ctx, req)
	if err != nil {
		return p.err("backup", err)
	}
	return p.err("backup", drain(stream, progress))
}

// Restore reads a backup back.
func (p *Pack) Restore(ctx context.Context, req *packpb.RestoreRequest, progress func(*packpb.Progress)) error {
	stream, err := p.rpc.Restore(ctx, req)
	if err != nil {
		return p.err("restore", err)
	}
	return p.err("restore", drain(stream, progress))
}

// Repair records the versions that tables in version_mismatch really have.
func (p *Pack) Repair(ctx context.Context, tables ...string) ([]*packpb.RepairedTable, error) {
	dctx, cancel := p.deadline(ctx)
	defer cancel()
	resp, err := p.rpc.Repair(dctx, &packpb.RepairRequest{Tables: tables})
	if err != nil {
		return nil, p.short(dctx, "repair", err)
	}
	return resp.Tables, nil
}

func drain(stream interface {
	Recv() (*packpb.Progress, error)
}, progress func(*packpb.Progress)) error {
	for {
		ev, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if progress != nil {
			progress(ev)
		}
	}
}
