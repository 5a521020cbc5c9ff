// Package locks keeps two things from happening at once on one
// installation: two hosts serving it, or a command changing packs or
// tables beside a serving host or beside another such command.
//
// The system lock is per system directory: flock(2) locks on files in
// <root>/data/locks/, which the kernel releases when the holder dies, so a
// killed command never leaves a lock behind. Each holder also writes who it
// is (pid, command, since when, and for a serving host its status socket)
// to data/locks/holders/, so that a blocked command can name it and `host
// status` can find the serving host; files of dead holders are ignored and
// swept by the next holder.
//
// The database lock (database.go) does the same across systems that share
// one database.
package locks

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/packhost/packhost/internal/proc"
)

// Mode is what a command does to a system, and so what it may run beside.
type Mode string

const (
	// Serve is a serving host: at most one per system, beside Read and
	// Fetch but never beside Write.
	Serve Mode = "serve"
	// ServeWrite is `host run` before it serves: it may recover, install
	// and upgrade (as Write), then turns into Serve with ToServe.
	ServeWrite Mode = "serve+write"
	// Write changes packs, tables or the system directory (installs,
	// upgrades, restores, repairs, recovery): alone on the system.
	Write Mode = "write"
	// Read reads tables without changing them (a hot database backup):
	// beside a serving host, not beside a writer.
	Read Mode = "read"
	// Fetch downloads update zips into Updates_Pending: beside a serving
	// host, not beside a writer or another fetch.
	Fetch Mode = "fetch"
)

// The lock files, in data/locks/.
const (
	serveFile = "serve.lock" // exclusive: Serve, ServeWrite, Write
	writeFile = "write.lock" // exclusive: ServeWrite, Write; shared: the others
	fetchFile = "fetch.lock" // exclusive: Fetch
)

// Dir is the lock directory, relative to the system directory.
const Dir = "data/locks"

// DefaultWait bounds how long a command waits for a lock.
const DefaultWait = 30 * time.Second

// pollEvery is how often a waiting command tries again.
const pollEvery = 100 * time.Millisecond

// ErrBusy is wrapped by Acquire's error when the lock stayed held: the
// message names the holders and what to do.
var ErrBusy = errors.New("the system is busy")

// Holder is a process holding a system lock.
type Holder struct {
	proc.Identity
	Command string    `json:"command"`
	Mode    Mode      `json:"mode"`
	Since   time.Time `json:"since"`
	// Control is a serving host's status socket (see host/control).
	Control string `json:"control,omitempty"`
}

// String names the holder for messages: "host run (pid 4242, serving since 10:15:02 UTC)".
func (h Holder) String() string {
	what := map[Mode]string{Serve: "serving", ServeWrite: "starting", Write: "changing the system", Read: "reading the tables", Fetch: "fetching updates"}[h.Mode]
	return fmt.Sprintf("%s (pid %d, %s since %s)", h.Command, h.PID, what, h.Since.UTC().Format("2006-01-02 15:04:05 UTC"))
}

// Options says how long to wait and whom to tell.
type Options struct {
	// Wait bounds the wait for a busy lock; DefaultWait when 0, no wait
	// when negative.
	Wait time.Duration
	// Waiting, when set, is called once when the lock is busy, with the
	// holders in the way.
	Waiting func(blockers []Holder)
}

// Lock is a held system lock. Release it on every path.
type Lock struct {
	root   string
	files  map[string]*os.File
	holder Holder
	path   string // the holder file
}

// Acquire takes the system lock of root in mode for command (such as
// "host run"). A second serving host is refused at once, naming the first;
// otherwise a busy lock is waited for up to opts.Wait, then refused with
// ErrBusy naming the holders.
func Acquire(ctx context.Context, root string, mode Mode, command string, opts Options) (*Lock, error) {
	dir := filepath.Join(root, Dir)
	if err := os.MkdirAll(filepath.Join(dir, "holders"), 0o700); err != nil {
		return nil, fmt.Errorf("system lock: %w", err)
	}
	l := &Lock{root: root, files: map[string]*os.File{},
		holder: Holder{Identity: proc.Self(), Command: command, Mode: mode, Since: time.Now().UTC()}}
	type want struct {
		file      string
		exclusive bool
	}
	var wants []want
	switch mode {
	case Serve:
		wants = []want{{serveFile, true}, {writeFile, false}}
	case ServeWrite, Write:
		wants = []want{{serveFile, true}, {writeFile, true}}
	case Read:
		wants = []want{{writeFile, false}}
	case Fetch:
		wants = []want{{writeFile, false}, {fetchFile, true}}
	default:
		return nil, fmt.Errorf("system lock: unknown mode %q", mode)
	}
	wait := opts.Wait
	if wait == 0 {
		wait = DefaultWait
	}
	deadline := time.Now().Add(max(wait, 0))
	told := false
	for _, w := range wants {
		for {
			ok, err := l.try(w.file, w.exclusive)
			if err != nil {
				l.Release()
				return nil, err
			}
			if ok {
				break
			}
			blockers := l.blockers(mode)
			// A second serving host is told at once: waiting for a host
			// that serves until stopped helps nobody.
			if (mode == Serve || mode == ServeWrite) && anyMode(blockers, Serve) {
				l.Release()
				return nil, fmt.Errorf("%w: %s serves this system directory (%s) already; one system has at most one serving host: stop it first, or use another --root",
					ErrBusy, describe(blockers, Serve), root)
			}
			if !told && opts.Waiting != nil {
				opts.Waiting(blockers)
				told = true
			}
			if time.Now().After(deadline) {
				l.Release()
				return nil, busyError(root, mode, blockers, wait)
			}
			select {
			case <-ctx.Done():
				l.Release()
				return nil, fmt.Errorf("wait for the system lock: %w", ctx.Err())
			case <-time.After(pollEvery):
			}
		}
	}
	if err := l.writeHolder(); err != nil {
		l.Release()
		return nil, err
	}
	l.sweep()
	return l, nil
}

func anyMode(hs []Holder, m Mode) bool {
	for _, h := range hs {
		if h.Mode == m || (m == Serve && h.Mode == ServeWrite) {
			return true
		}
	}
	return false
}

func describe(hs []Holder, m Mode) string {
	var out []string
	for _, h := range hs {
		if m == "" || h.Mode == m || (m == Serve && h.Mode == ServeWrite) {
			out = append(out, h.String())
		}
	}
	if len(out) == 0 {
		return "another process"
	}
	return strings.Join(out, ", ")
}

func busyError(root string, mode Mode, blockers []Holder, waited time.Duration) error {
	what := "another command"
	if len(blockers) > 0 {
		what = describe(blockers, "")
	}
	advice := "try again when it has finished"
	switch {
	case anyMode(blockers, Serve) && mode == Write:
		advice = "commands that change packs or tables never run beside a serving host: stop the host first (to update a site: stop it, then `host run --install-updates`)"
	case mode == Fetch && anyMode(blockers, Fetch):
		advice = "two fetches never run at once: let the other finish"
	}
	return fmt.Errorf("%w: %s holds the system lock of %s (waited %s); %s", ErrBusy, what, root, waited.Round(time.Millisecond), advice)
}

// try takes the flock of one lock file without blocking.
func (l *Lock) try(name string, exclusive bool) (bool, error) {
	f := l.files[name]
	if f == nil {
		var err error
		f, err = os.OpenFile(filepath.Join(l.root, Dir, name), os.O_CREATE|os.O_RDWR, 0o600)
		if err != nil {
			return false, fmt.Errorf("system lock: %w", err)
		}
		l.files[name] = f
	}
	how := syscall.LOCK_SH
	if exclusive {
		how = syscall.LOCK_EX
	}
	err := syscall.Flock(int(f.Fd()), how|syscall.LOCK_NB)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, syscall.EWOULDBLOCK):
		return false, nil
	}
	return false, fmt.Errorf("system lock %s: %w", name, err)
}

// ToServe turns a ServeWrite lock into a Serve lock (the write lock becomes
// shared, so hot backups and fetches may run) and records the serving
// host's status socket. A writer cannot slip in: it needs the serve lock,
// which stays held.
func (l *Lock) ToServe(control string) error {
	if l.holder.Mode != ServeWrite && l.holder.Mode != Serve {
		return fmt.Errorf("system lock: a %s lock cannot serve", l.holder.Mode)
	}
	if f := l.files[writeFile]; f != nil {
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_SH); err != nil {
			return fmt.Errorf("system lock: %w", err)
		}
	}
	l.holder.Mode, l.holder.Control = Serve, control
	return l.writeHolder()
}

// Holder is who holds l.
func (l *Lock) Holder() Holder { return l.holder }

// Release gives the lock up and removes the holder file. Safe to call more
// than once and on nil.
func (l *Lock) Release() {
	if l == nil {
		return
	}
	if l.path != "" {
		_ = os.Remove(l.path)
		l.path = ""
	}
	for name, f := range l.files {
		_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		_ = f.Close()
		delete(l.files, name)
	}
}

func holderName(id proc.Identity) string { return fmt.Sprintf("%d-%d.json", id.PID, id.Start) }

func (l *Lock) writeHolder() error {
	data, err := json.MarshalIndent(l.holder, "", "  ")
	if err != nil {
		return err
	}
	dir := filepath.Join(l.root, Dir, "holders")
	path := filepath.Join(dir, holderName(l.holder.Identity))
	tmp, err := os.CreateTemp(dir, ".holder-*")
	if err != nil {
		return fmt.Errorf("system lock: %w", err)
	}
	if _, err := tmp.Write(append(data, '\n')); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return fmt.Errorf("system lock: %w", err)
	}
	if err := tmp.Close(); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("system lock: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("system lock: %w", err)
	}
	l.path = path
	return nil
}

// blockers are the live holders whose modes conflict with mode.
func (l *Lock) blockers(mode Mode) []Holder {
	var out []Holder
	for _, h := range Holders(l.root) {
		if proc.IsSelf(h.Identity) {
			continue
		}
		if conflicts(mode, h.Mode) {
			out = append(out, h)
		}
	}
	return out
}

func conflicts(a, b Mode) bool {
	writer := func(m Mode) bool { return m == Write || m == ServeWrite }
	server := func(m Mode) bool { return m == Serve || m == ServeWrite || m == Write }
	switch {
	case writer(a) || writer(b):
		return true
	case server(a) && server(b):
		return true
	case a == Fetch && b == Fetch:
		return true
	}
	return false
}

// sweep removes the holder files of processes that are gone.
func (l *Lock) sweep() {
	entries, _ := os.ReadDir(filepath.Join(l.root, Dir, "holders"))
	for _, e := range entries {
		p := filepath.Join(l.root, Dir, "holders", e.Name())
		if strings.HasPrefix(e.Name(), ".holder-") {
			if fi, err := e.Info(); err == nil && time.Since(fi.ModTime()) > time.Minute {
				_ = os.Remove(p)
			}
			continue
		}
		if h, ok := readHolder(p); ok && !proc.Alive(h.Identity) {
			_ = os.Remove(p)
		}
	}
}

func readHolder(p string) (Holder, bool) {
	data, err := os.ReadFile(p)
	if err != nil {
		return Holder{}, false
	}
	var h Holder
	if err := json.Unmarshal(data, &h); err != nil || h.PID <= 0 {
		return Holder{}, false
	}
	return h, true
}

// Holders lists the live holders of root's system lock, oldest first. It
// only reads: `host status` calls it.
func Holders(root string) []Holder {
	entries, err := os.ReadDir(filepath.Join(root, Dir, "holders"))
	if err != nil {
		return nil
	}
	var out []Holder
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".json") {
			continue
		}
		h, ok := readHolder(filepath.Join(root, Dir, "holders", e.Name()))
		if ok && proc.Alive(h.Identity) {
			out = append(out, h)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Since.Before(out[j].Since) })
	return out
}

// Serving returns the live serving host of root, if any.
func Serving(root string) (Holder, bool) {
	for _, h := range Holders(root) {
		if h.Mode == Serve && h.Control != "" {
			return h, true
		}
	}
	return Holder{}, false
}
