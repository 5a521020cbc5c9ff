// Package cli is the host's command line. Each command is a function that
// returns an exit code and an error; Main prints the error and exits with
// the code (SPEC's exit codes).
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/packhost/packhost/host/locks"
	"github.com/packhost/packhost/host/report"
	"github.com/packhost/packhost/host/system"
	"github.com/packhost/packhost/internal/dbconn"
)

// HostVersion is the host's own version, checked against update zips'
// min_host_version.
const HostVersion = "0.1.0"

// env carries what every command gets.
type env struct {
	stdout, stderr io.Writer
	ctx            context.Context
}

// common are the flags every command takes.
type common struct {
	root         string
	db           string
	logLevel     string
	startTimeout time.Duration
	rpcTimeout   time.Duration
	lockWait     time.Duration
}

func (c *common) register(fs *flag.FlagSet) {
	fs.StringVar(&c.root, "root", ".", "system directory")
	fs.StringVar(&c.db, "db", "", "database: empty for the embedded SQLite file <root>/data/host.db, or postgres://...")
	fs.StringVar(&c.logLevel, "log-level", "info", "log level: trace, debug, info, warn, error")
	fs.DurationVar(&c.startTimeout, "start-timeout", 0, "how long a pack may take to start (default 10s)")
	fs.DurationVar(&c.rpcTimeout, "rpc-timeout", 0, "how long a pack may take to answer a schema check or a repair (default 10s)")
	fs.DurationVar(&c.lockWait, "lock-wait", locks.DefaultWait, "how long to wait for another command that holds the system or the database")
}

func (c *common) logger(e env) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{Name: "host", Output: e.stderr, Level: hclog.LevelFromString(c.logLevel)})
}

func (c *common) options(e env, readOnly bool) system.Options {
	return system.Options{Root: c.root, DBFlag: c.db, ReadOnly: readOnly, StartTimeout: c.startTimeout, RPCTimeout: c.rpcTimeout,
		Logger: c.logger(e), Checks: journalProblems, Warnings: feedWarnings,
		Pending: func(root string, db dbconn.Target) ([]report.PendingUpdate, error) {
			return inspectPending(e, *c, root, db)
		}}
}

// errUsage marks errors that are the caller's words being off (exit 2).
var errUsage = errors.New("usage")

func usageErr(format string, a ...any) error {
	return fmt.Errorf("%w: %s", errUsage, fmt.Sprintf(format, a...))
}

type command struct {
	name    string
	summary string
	run     func(e env, args []string) (int, error)
}

func commands() []command {
	return []command{
		{"run", "check code updates and the database, then serve", runCmd},
		{"status", "report packs, versions, table states and pending updates; no side effects", statusCmd},
		{"db", "database maintenance: backup, restore, repair, upgrade", dbCmd},
		{"recover", "an interrupted install: what it left, and the ways out (--retry, --restore PATH, --keep-current)", recoverCmd},
		{"pack", "pack zips: build, sign; dev-install for the development loop", packCmd},
		{"keygen", "make an ed25519 key pair for signing update zips", keygenCmd},
		{"admin", "the admin pages' token: reset-token makes a new one (the file keeps only its hash)", adminCmd},
		{"updates", "update feed: fetch", updatesCmd},
		{"version", "print the host's version", func(e env, _ []string) (int, error) {
			fmt.Fprintln(e.stdout, HostVersion)
			return 0, nil
		}},
	}
}

// Main runs the command line and returns the process exit code.
func Main(args []string, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// The first signal cancels ctx: the command stops, putting back what
	// it must within a bounded time. A second one ends the process at
	// once (the signal's default action); what was not put back is left
	// to the next start, which recovers it from the journal.
	context.AfterFunc(ctx, stop)
	e := env{stdout: stdout, stderr: stderr, ctx: ctx}
	name, rest := "run", args
	if len(args) > 0 && (args[0] == "-h" || args[0] == "-help" || args[0] == "--help") {
		name = "help"
	} else if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		name, rest = args[0], args[1:]
	}
	if name == "help" {
		printUsage(stdout)
		return 0
	}
	for _, c := range commands() {
		if c.name == name {
			code, err := c.run(e, rest)
			return finish(e, code, err)
		}
	}
	fmt.Fprintf(stderr, "host: unknown command %q\n\n", name)
	printUsage(stderr)
	return report.ExitUsage
}

func finish(e env, code int, err error) int {
	switch {
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errUsage):
		fmt.Fprintf(e.stderr, "host: %v\n", err)
		return report.ExitUsage
	case err != nil:
		fmt.Fprintf(e.stderr, "host: %v\n", err)
		if code == 0 {
			code = report.ExitError
		}
	}
	return code
}

func printUsage(w io.Writer) {
	fmt.Fprintln(w, "usage: host [command] [flags]\n\ncommands:")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-8s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w, "\nEvery command takes --root DIR and --db DSN. `host COMMAND -h` lists a command's flags.")
	fmt.Fprintln(w, "Exit codes: 0 ok, 1 error, 2 usage, 3 code updates pending, 4 database updates needed, 5 schema conflict.")
}

// newFlags makes a flag set that reports errors instead of exiting.
func newFlags(e env, name string) *flag.FlagSet {
	fs := flag.NewFlagSet("host "+name, flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	return fs
}

func parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	return nil
}

// sub dispatches a command with subcommands.
func sub(e env, group string, args []string, subs map[string]func(env, []string) (int, error)) (int, error) {
	if len(args) == 0 {
		var names []string
		for n := range subs {
			names = append(names, n)
		}
		slices.Sort(names)
		return 0, usageErr("host %s needs a subcommand: %s", group, strings.Join(names, ", "))
	}
	f, ok := subs[args[0]]
	if !ok {
		return 0, usageErr("host %s: unknown subcommand %q", group, args[0])
	}
	return f(e, args[1:])
}
