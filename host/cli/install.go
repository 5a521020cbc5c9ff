package cli

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/packhost/packhost/host/install"
	"github.com/packhost/packhost/host/locks"
	"github.com/packhost/packhost/host/packs"
	"github.com/packhost/packhost/host/preflight"
	"github.com/packhost/packhost/host/progress"
	"github.com/packhost/packhost/host/recovery"
	"github.com/packhost/packhost/host/report"
	"github.com/packhost/packhost/host/system"
	"github.com/packhost/packhost/host/updatezip"
	"github.com/packhost/packhost/internal/dbconn"
)

// packInstallCmd installs the update zips named on the command line the
// way `host run --install-updates` installs what is pending: it copies
// them into Updates_Pending and installs exactly those; other pending zips
// are left alone. Without zips it installs every pending one. The
// development loop (`make build`) uses it.
func packInstallCmd(e env, args []string) (int, error) {
	var c common
	fs := newFlags(e, "pack install")
	c.register(fs)
	noBackup := fs.Bool("no-backup", false, "do not back up the system directory and the tables first")
	reinstall := fs.Bool("reinstall", false, "accept a zip of the installed version (development loop)")
	recoverOnly := fs.Bool("recover-only", false, "finish or undo an interrupted install, then stop")
	if err := parse(fs, args); err != nil {
		return 0, err
	}
	if err := os.MkdirAll(c.root, 0o755); err != nil {
		return 1, err
	}
	s, err := open(e, c, "host pack install", locks.Write)
	if err != nil {
		return 1, err
	}
	defer s.Close()
	if *recoverOnly {
		return 0, nil
	}
	pending := s.Path(system.PendingDir)
	if err := os.MkdirAll(pending, 0o755); err != nil {
		return 1, err
	}
	var names, copied []string // no names: every pending zip
	for _, z := range fs.Args() {
		name, made, err := copyInto(z, pending)
		if err != nil {
			removeAll(copied)
			return 1, fmt.Errorf("pack install: %w", err)
		}
		names = append(names, name)
		if made {
			copied = append(copied, filepath.Join(pending, name))
		}
	}
	if _, err := installUpdates(e, s, installOptions{noBackup: *noBackup, reinstall: *reinstall, only: names}); err != nil {
		if errors.Is(err, updatezip.ErrNothingPending) {
			return 1, fmt.Errorf("pack install: nothing to install: name update zips, or drop them into %s", system.PendingDir)
		}
		// Refused before anything changed: the copies this command made
		// go (the zips it was given stay where they were). A failure later
		// leaves them pending, as `host run --install-updates` does.
		var ie *install.InstallError
		if errors.As(err, &ie) && ie.Step == install.StepValidate {
			removeAll(copied)
		}
		return 1, err
	}
	return 0, nil
}

func removeAll(paths []string) {
	for _, p := range paths {
		_ = os.Remove(p)
	}
}

// copyInto copies the zip src into dir under its own name, replacing a
// pending zip of that name, and says whether it made a new file (false
// when src is that file or the name was already pending).
func copyInto(src, dir string) (name string, made bool, err error) {
	name = filepath.Base(src)
	dst := filepath.Join(dir, name)
	if a, err := filepath.Abs(src); err == nil {
		if b, err := filepath.Abs(dst); err == nil && a == b {
			return name, false, nil
		}
	}
	data, err := os.ReadFile(src)
	if err != nil {
		return "", false, err
	}
	_, existed := os.Stat(dst)
	made = existed != nil
	tmp := dst + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return "", false, err
	}
	if err := os.Rename(tmp, dst); err != nil {
		return "", false, err
	}
	return name, made, nil
}

type installOptions struct {
	noBackup, reinstall bool
	// only names the zips in Updates_Pending to install; all when nil.
	only []string
}

// installUpdates installs pending zips (all, or o.only) with the session's
// locks, the database lock held exclusively while it works. It stops the
// session's packs: the caller opens the system again after a nil return
// and serves from the new versions. On error nothing was installed (the
// old versions are back, the zips still pending) and the error says what
// failed.
func installUpdates(e env, s *session, o installOptions) (*install.Result, error) {
	bars := progress.New(e.stdout, s.Log)
	lastTenth := int64(-1)
	in := &install.Installer{
		Root:     s.Root,
		Inspect:  updatezip.Options{HostVersion: HostVersion, AllowSameVersion: o.reinstall, Only: o.only},
		Packs:    s.PackConfig(s.options(false), s.DB != nil),
		DB:       s.packDB(s.System),
		NoBackup: o.noBackup,
		Command:  s.lock.Holder().Command,
		Log:      s.Log,
		Progress: func(done, total int64) {
			// A log line per 10% when stdout is not a terminal.
			if pct := done * 10 / max(total, 1); pct != lastTenth || done == total {
				lastTenth = pct
				bars.Update("system backup", done, total, "")
			}
		},
	}
	start := time.Now()
	var res *install.Result
	err := s.writing(func() error {
		var err error
		res, err = in.Install(e.ctx, s.Packs)
		return err
	})
	if err != nil {
		return nil, err
	}
	if res.SystemBackup != "" {
		bars.Done("system backup", res.SystemBackup)
	}
	for i, z := range res.Zips {
		fmt.Fprintf(e.stdout, "installed %s %s (was %s); zip moved to %s\n", z.Manifest.ID, z.Manifest.Version,
			orNew(z.Installed), res.Moved[i])
	}
	s.Log.Info("install finished", "took", time.Since(start).Round(time.Millisecond))
	pruneBackups(s)
	return res, nil
}

func orNew(v string) string {
	if v == "" {
		return "not installed"
	}
	return v
}

// inspectPending reports the zips in Updates_Pending with what they hold
// and every problem an install would refuse them for (host/preflight:
// this database, the zips' binaries), changing nothing.
func inspectPending(e env, c common, root string, db dbconn.Target) ([]report.PendingUpdate, error) {
	zips, err := updatezip.Inspect(root, updatezip.Options{HostVersion: HostVersion})
	if err != nil {
		return updatezip.Reports(zips), err
	}
	env := preflight.Env{Root: root, Packs: packs.Config{DB: db, HasDB: true, StartTimeout: c.startTimeout, Logger: c.logger(e)}}
	err = preflight.Check(e.ctx, env, zips)
	return updatezip.Reports(zips), err
}

// journalProblems says, without changing anything, what the install
// journal of root shows: an install under way, one interrupted (which the
// next command that changes the system recovers), or one whose recovery
// could not finish, with the ways out.
func journalProblems(root string) []string {
	j, err := recovery.Read(root)
	switch {
	case err != nil:
		return []string{fmt.Sprintf("%v", err)}
	case j == nil:
		return nil
	}
	what := fmt.Sprintf("an install (%s) by %s is in state %q", packList(j), j.Owner, j.State)
	switch {
	case !j.Owner.Gone():
		return []string{what + ": it is under way; wait for it to finish"}
	case j.LastError != "":
		return []string{what + " and its recovery could not finish: " + j.LastError +
			"; `host recover` shows what is on disk and the ways out (--retry, --restore PATH, --keep-current)"}
	}
	return []string{what + " and was interrupted: the next `host run` or command that changes the system finishes or undoes it; `host recover` shows the details"}
}

func packList(j *recovery.Journal) string {
	out := ""
	for i, e := range j.Packs {
		if i > 0 {
			out += ", "
		}
		out += fmt.Sprintf("%s %s -> %s", e.ID, recovery.OrNew(e.OldVersion), e.Version)
	}
	return out
}
