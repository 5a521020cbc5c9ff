package packs

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"

	"github.com/packhost/packhost/internal/dbconn"
	"github.com/packhost/packhost/internal/packerr"
	"github.com/packhost/packhost/internal/packpb"
	"github.com/packhost/packhost/internal/wire"
)

// DefaultStartTimeout bounds how long a pack may take to start and answer
// Describe.
const DefaultStartTimeout = 10 * time.Second

// ErrChecksum is wrapped by the start error of a pack whose binary does not
// match its manifest's sha256. The pack is not started.
var ErrChecksum = errors.New("binary checksum does not match the manifest")

// ErrIdentity is wrapped when a binary reports another id or version than
// its manifest.
var ErrIdentity = errors.New("binary does not match its manifest")

// Config says how packs are started.
type Config struct {
	// DB is handed to every pack in its environment; HasDB false hands none.
	DB    dbconn.Target
	HasDB bool
	// DBFor, when set, gives each pack its own target instead (its own
	// database role on PostgreSQL, see host/packroles); ok false hands
	// none.
	DBFor func(packID string) (t dbconn.Target, ok bool)
	// StartTimeout bounds handshake plus Describe; DefaultStartTimeout if 0.
	StartTimeout time.Duration
	// RPCTimeout bounds each CheckSchema and Repair; DefaultRPCTimeout if 0.
	RPCTimeout time.Duration
	// Hashes, when set, lets an unchanged binary whose sha256 was verified
	// before start without being read again (see HashCache).
	Hashes *HashCache
	Logger hclog.Logger
}

// DefaultRPCTimeout bounds the short calls to a pack (CheckSchema,
// Repair): a pack that does not answer in time is reported as not
// answering and the rest of the system goes on.
const DefaultRPCTimeout = 10 * time.Second

// Launcher starts packs and stops all of them on Close. Packs talk to the
// host over unix sockets inside a directory of mode 0700 that only the
// host's user can enter, so no other local user can reach them.
type Launcher struct {
	cfg       Config
	socketDir string

	mu      sync.Mutex
	started []*Pack
	closed  bool
	seq     int // numbers the pages sockets, so no two starts share one
}

// NewLauncher makes the private socket directory.
func NewLauncher(cfg Config) (*Launcher, error) {
	if cfg.StartTimeout == 0 {
		cfg.StartTimeout = DefaultStartTimeout
	}
	if cfg.RPCTimeout == 0 {
		cfg.RPCTimeout = DefaultRPCTimeout
	}
	if cfg.Logger == nil {
		cfg.Logger = hclog.NewNullLogger()
	}
	dir, err := MakePrivateDir("packhost-")
	if err != nil {
		return nil, fmt.Errorf("make pack socket directory: %w", err)
	}
	return &Launcher{cfg: cfg, socketDir: dir}, nil
}

// SocketDir is the private directory the packs' sockets live in.
func (l *Launcher) SocketDir() string { return l.socketDir }

// StartError says why a pack did not start, with the tail of its stderr.
type StartError struct {
	ID     string
	Err    error
	Stderr string
}

func (e *StartError) Error() string {
	msg := fmt.Sprintf("pack %s did not start: %v", e.ID, e.Err)
	if s := strings.TrimSpace(e.Stderr); s != "" {
		msg += "\n  last stderr lines:\n    " + strings.ReplaceAll(s, "\n", "\n    ")
	}
	return msg
}

func (e *StartError) Unwrap() error { return e.Err }

// StartAll starts the packs in parallel. It returns those that started, in
// the order given, and one *StartError for each that did not.
func (l *Launcher) StartAll(ctx context.Context, list []Installed) ([]*Pack, []error) {
	packs := make([]*Pack, len(list))
	errs := make([]error, len(list))
	var wg sync.WaitGroup
	for i, inst := range list {
		wg.Add(1)
		go func() {
			defer wg.Done()
			packs[i], errs[i] = l.Start(ctx, inst)
		}()
	}
	wg.Wait()
	var okPacks []*Pack
	var failed []error
	for i := range list {
		if errs[i] != nil {
			failed = append(failed, errs[i])
		} else {
			okPacks = append(okPacks, packs[i])
		}
	}
	return okPacks, failed
}

// Start verifies the pack's binary against its manifest, starts it, and
// asks it to Describe itself. The binary must report the manifest's id and
// version.
func (l *Launcher) Start(ctx context.Context, inst Installed) (*Pack, error) {
	fail := func(err error, stderr string) error { return &StartError{ID: inst.ID, Err: err, Stderr: stderr} }
	if inst.Err != nil {
		return nil, fail(inst.Err, "")
	}
	if _, err := os.Stat(inst.Binary); err != nil {
		return nil, fail(fmt.Errorf("read binary: %w", err), "")
	}
	// go-plugin's SecureConfig hashes the binary right before exec, unless
	// the hash cache says this very file was verified before; the file is
	// hashed again only to name both sums when they differ, so a pack's
	// binary is read at most once per start.
	p, err := l.start(ctx, inst.ID, inst.Binary, inst.SHA256)
	if errors.Is(err, plugin.ErrChecksumsDoNotMatch) {
		sum, herr := FileSHA256(inst.Binary)
		if herr != nil {
			return nil, fail(fmt.Errorf("read binary: %w", herr), "")
		}
		return nil, fail(fmt.Errorf("%w: %s: sha256 mismatch (manifest %s, file %s); the binary was not run: reinstall the pack from its update zip",
			ErrChecksum, inst.Binary, inst.SHA256, sum), "")
	}
	if err != nil {
		return nil, err
	}
	p.Installed = inst
	if inst.Manifest != nil && (p.Info.Id != inst.ID || p.Info.Version != inst.Manifest.Version) {
		p.Stop()
		return nil, fail(fmt.Errorf("%w: manifest says %s %s, binary reports %s %s", ErrIdentity,
			inst.ID, inst.Manifest.Version, p.Info.Id, p.Info.Version), p.tail.String())
	}
	return p, nil
}

// StartBinary starts a pack binary that is not installed (to read its
// Describe when building its manifest).
func (l *Launcher) StartBinary(ctx context.Context, binary string) (*Pack, error) {
	// A bare name would be looked up in PATH by exec; the operator means the
	// file in the current directory.
	if abs, err := filepath.Abs(binary); err == nil {
		binary = abs
	}
	sum, err := FileSHA256(binary)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", binary, err)
	}
	p, err := l.start(ctx, "", binary, sum)
	if err != nil {
		return nil, err
	}
	p.Installed = Installed{ID: p.Info.Id, Binary: binary, SHA256: sum}
	return p, nil
}

func (l *Launcher) start(ctx context.Context, id, binary, sum string) (*Pack, error) {
	name := id
	if name == "" {
		name = binary
	}
	l.mu.Lock()
	closed := l.closed
	l.mu.Unlock()
	if closed {
		return nil, &StartError{ID: name, Err: errors.New("host is shutting down")}
	}
	checksum, err := hex.DecodeString(sum)
	if err != nil || len(checksum) != sha256.Size {
		return nil, &StartError{ID: name, Err: fmt.Errorf("%w: sha256 %q is not 64 hex digits; reinstall the pack", ErrChecksum, sum)}
	}
	tail := newTail(30)
	pages := l.pagesSocket()
	cmd := exec.Command(binary)
	cmd.Env = l.env(id, pages)
	setDeathSignal(cmd)
	secure := &plugin.SecureConfig{Checksum: checksum, Hash: sha256.New()}
	cached := l.cfg.Hashes.Verified(binary, sum)
	if cached {
		secure = nil
	}
	before, _ := stamp(binary)
	client := plugin.NewClient(&plugin.ClientConfig{
		HandshakeConfig:  wire.Handshake,
		Plugins:          wire.PluginSet(nil),
		Cmd:              cmd,
		SecureConfig:     secure,
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		StartTimeout:     l.cfg.StartTimeout,
		Logger:           quietExit{l.cfg.Logger.Named(name)},
		Stderr:           tail,
		SyncStdout:       io.Discard,
		SyncStderr:       io.Discard,
		SkipHostEnv:      true,
	})
	p := &Pack{client: client, tail: tail, name: name, rpcTimeout: l.cfg.RPCTimeout, pagesSocket: pages}
	l.mu.Lock()
	l.started = append(l.started, p)
	l.mu.Unlock()

	fail := func(err error) (*Pack, error) {
		client.Kill()
		return nil, &StartError{ID: name, Err: err, Stderr: tail.String()}
	}
	// Client() has no context: stop the pack if ctx ends first.
	stop := context.AfterFunc(ctx, client.Kill)
	defer stop()
	rpcClient, err := client.Client()
	if err != nil {
		return fail(handshakeError(err, l.cfg.StartTimeout))
	}
	raw, err := rpcClient.Dispense(wire.PluginName)
	if err != nil {
		return fail(err)
	}
	p.rpc = raw.(packpb.PackClient)
	dctx, cancel := context.WithTimeout(ctx, l.cfg.StartTimeout)
	defer cancel()
	info, err := p.rpc.Describe(dctx, &packpb.DescribeRequest{})
	if err != nil {
		return fail(fmt.Errorf("describe: %w", packerr.FromStatus(err)))
	}
	if id != "" && info.Id != id {
		return fail(fmt.Errorf("%w: installed as %q, binary reports id %q", ErrIdentity, id, info.Id))
	}
	p.Info = info
	if !cached {
		// go-plugin checked the sum before exec.
		l.cfg.Hashes.Put(binary, sum, before)
	}
	return p, nil
}

// pagesSocket is a new path in the private socket directory for the pages
// of the next pack started. Each start gets its own, so a restarted pack
// never meets its predecessor's socket.
func (l *Launcher) pagesSocket() string {
	l.mu.Lock()
	l.seq++
	n := l.seq
	l.mu.Unlock()
	return filepath.Join(l.socketDir, "pages-"+strconv.Itoa(n)+".sock")
}

// env is the whole environment of a pack: a few harmless variables of the
// host's, the database, and the pack protocol's own. Nothing else of the
// host's environment (secrets) reaches a pack.
func (l *Launcher) env(id, pagesSocket string) []string {
	var env []string
	for _, k := range []string{"PATH", "HOME", "TMPDIR", "LANG", "LC_ALL", "TZ", "USER", "GOCOVERDIR"} {
		if v, ok := os.LookupEnv(k); ok {
			env = append(env, k+"="+v)
		}
	}
	switch {
	case l.cfg.DBFor != nil && id != "":
		if t, ok := l.cfg.DBFor(id); ok {
			env = append(env, t.Env()...)
		}
	case l.cfg.HasDB && l.cfg.DBFor == nil:
		env = append(env, l.cfg.DB.Env()...)
	}
	env = append(env,
		wire.EnvPackID+"="+id,
		wire.EnvHostPID+"="+strconv.Itoa(os.Getpid()),
		wire.EnvLogLevel+"="+l.cfg.Logger.GetLevel().String(),
		wire.EnvUnixSocketDir+"="+l.socketDir,
		wire.EnvPagesSocket+"="+pagesSocket,
	)
	return env
}

// Close stops every pack this launcher started and removes the socket
// directory. It is safe to call more than once.
func (l *Launcher) Close() {
	l.mu.Lock()
	l.closed = true
	started := l.started
	l.started = nil
	l.mu.Unlock()
	var wg sync.WaitGroup
	for _, p := range started {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.Stop()
		}()
	}
	wg.Wait()
	_ = os.RemoveAll(l.socketDir)
}

// tail keeps the last lines written to it: a pack's stderr, shown when it
// fails.
type tail struct {
	mu    sync.Mutex
	max   int
	lines []string
}

func newTail(max int) *tail { return &tail{max: max} }

func (t *tail) Write(b []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, line := range strings.Split(strings.TrimRight(string(b), "\n"), "\n") {
		if strings.TrimSpace(line) == "" {
			continue
		}
		t.lines = append(t.lines, line)
		if len(t.lines) > t.max {
			t.lines = t.lines[len(t.lines)-t.max:]
		}
	}
	return len(b), nil
}

func (t *tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return strings.Join(t.lines, "\n")
}

// quietExit demotes go-plugin's "plugin process exited" to debug: the host
// stops its packs on purpose, and reports the ones that die on their own.
type quietExit struct{ hclog.Logger }

func (q quietExit) Info(msg string, args ...any) {
	if msg == "plugin process exited" {
		q.Logger.Debug(msg, args...)
		return
	}
	q.Logger.Info(msg, args...)
}

// handshakeError replaces go-plugin's generic advice with what happened.
func handshakeError(err error, timeout time.Duration) error {
	msg := err.Error()
	switch {
	case strings.Contains(msg, "timeout while waiting for plugin to start"):
		return fmt.Errorf("no handshake within %s (--start-timeout); the pack was stopped", timeout)
	case strings.Contains(msg, "Unrecognized remote plugin message"),
		strings.Contains(msg, "plugin exited before we could connect"):
		return errors.New("the pack exited before completing its handshake")
	}
	return err
}
