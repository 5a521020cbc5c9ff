package cli

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/packhost/packhost/host/backup"
	"github.com/packhost/packhost/host/locks"
	"github.com/packhost/packhost/host/recovery"
	"github.com/packhost/packhost/host/system"
)

// recoverCmd is `host recover`: what an interrupted install left and the
// ways out, or one of them taken. Without a choice it only reads.
//
//	host recover                  show the journal, what is on disk, the choices
//	host recover --retry          finish or undo the install as the journal says
//	host recover --restore PATH   put the old versions back and restore the
//	                              tables from these database backups
//	host recover --keep-current   keep packs and tables as they are now
//
// Every choice runs under the system's write lock and the database's
// exclusive lock, is verified (the packs start and the tables are checked
// afterwards) and is logged to data/recovery.log.
func recoverCmd(e env, args []string) (int, error) {
	var c common
	fs := newFlags(e, "recover")
	c.register(fs)
	retry := fs.Bool("retry", false, "finish or undo the interrupted install, as the journal says")
	keep := fs.Bool("keep-current", false, "keep the packs and tables as they are now and set the journal aside")
	var restore multiFlag
	fs.Var(&restore, "restore", "put the old versions back and restore the tables from this database backup (a db-<ts>-<pack> directory; repeatable)")
	if err := parse(fs, args); err != nil {
		return 0, err
	}
	if fs.NArg() > 0 {
		return 0, usageErr("host recover takes no arguments, got %q", fs.Args())
	}
	choices := 0
	for _, b := range []bool{*retry, *keep, len(restore) > 0} {
		if b {
			choices++
		}
	}
	if choices > 1 {
		return 0, usageErr("choose one of --retry, --restore PATH and --keep-current")
	}
	root, err := filepath.Abs(c.root)
	if err != nil {
		return 1, err
	}
	c.root = root
	sit, ok := recovery.Describe(root)
	if !ok {
		fmt.Fprintln(e.stdout, "There is no interrupted install: nothing to recover.")
		return 0, nil
	}
	if choices == 0 {
		writeSituation(e, root, sit)
		return 0, nil
	}
	var choice string
	var act func(s *session) (string, error)
	switch {
	case *retry:
		choice = "--retry"
		act = func(s *session) (string, error) {
			if err := s.recover(); err != nil {
				return "", err
			}
			return "the install was finished or undone as its journal says", nil
		}
	case *keep:
		choice = "--keep-current"
		act = func(s *session) (string, error) {
			aside, kept, err := recovery.KeepCurrent(root)
			if err != nil {
				return "", err
			}
			return fmt.Sprintf("kept %s as they are; the journal was set aside as %s", strings.Join(kept, ", "), aside), nil
		}
	default:
		choice = "--restore " + strings.Join(restore, " --restore ")
		act = func(s *session) (string, error) { return restoreChoice(e, s, restore) }
	}
	s, err := openWith(e, c, "host recover", locks.Write, false)
	if err != nil {
		return 1, err
	}
	defer s.Close()
	outcome, err := act(s)
	logRecovery(root, choice, outcome, err)
	if err != nil {
		return 1, fmt.Errorf("recover %s: %w", choice, err)
	}
	fmt.Fprintln(e.stdout, outcome)
	// Verified: the packs start from what is on disk now, and their
	// tables are checked.
	if err := s.reopen(); err != nil {
		return 1, err
	}
	r, err := s.Report(e.ctx)
	if err != nil {
		return 1, err
	}
	fmt.Fprintln(e.stdout, "\nThe system now (what `host status` reports):")
	if err := r.WriteText(e.stdout); err != nil {
		return 1, err
	}
	return 0, nil
}

// restoreChoice puts the old versions of the journal's packs back, then
// restores the tables from the backups the operator named (each from its
// own schema and rows) and drops the tables the install created.
func restoreChoice(e env, s *session, paths []string) (string, error) {
	var dirs []string
	for _, p := range paths {
		dir, err := backup.Resolve(filepath.Join(s.c.root, system.BackupsDir), p)
		if err != nil {
			return "", err
		}
		dirs = append(dirs, dir)
	}
	j, err := recovery.UndoFilesOnly(s.c.root)
	if err != nil {
		return "", err
	}
	if err := s.reopen(); err != nil {
		return "", err
	}
	for _, dir := range dirs {
		if _, err := backup.RestoreWith(e.ctx, s.Packs, dir, backup.RestoreOptions{AsItWas: true}, nil); err != nil {
			return "", err
		}
	}
	if err := recovery.DropNew(e.ctx, s.packDB(s.System), j, s.log); err != nil {
		return "", err
	}
	if err := recovery.Remove(s.c.root); err != nil {
		return "", err
	}
	return fmt.Sprintf("the old versions were put back and the tables restored from %s", strings.Join(dirs, ", ")), nil
}

func writeSituation(e env, root string, sit *recovery.Situation) {
	w := e.stdout
	fmt.Fprintf(w, "Install journal  %s\n", recovery.Path(root))
	if sit.ReadErr != nil {
		fmt.Fprintf(w, "Cannot be used   %v\n", sit.ReadErr)
		fmt.Fprintln(w, "\nWays out:")
		fmt.Fprintln(w, "  host recover --keep-current   keep the packs and tables as they are now; the journal is set aside in "+system.BackupsDir)
		fmt.Fprintln(w, "  host recover --restore PATH   restore the tables from a database backup in "+system.BackupsDir+" once the packs are as you want them")
		return
	}
	j := sit.Journal
	fmt.Fprintf(w, "State            %s\n", j.State)
	state := "gone"
	if !j.Owner.Gone() {
		state = "still running"
	}
	fmt.Fprintf(w, "Written by       %s: %s\n", j.Owner, state)
	fmt.Fprintf(w, "Packs            %s\n", packList(j))
	if len(j.Upgrade) > 0 {
		fmt.Fprintf(w, "Tables of        %s (upgraded by the install)\n", strings.Join(j.Upgrade, ", "))
	}
	if j.LastError != "" {
		fmt.Fprintf(w, "Last attempt     %s\n", j.LastError)
	}
	fmt.Fprintln(w, "\nOn disk:")
	for _, f := range sit.Files {
		fmt.Fprintf(w, "  %s\n", f)
	}
	fmt.Fprintln(w, "\nWays out:")
	fmt.Fprintln(w, "  host recover --retry          finish or undo the install as the journal says (what the next `host run` does)")
	fmt.Fprintln(w, "  host recover --restore PATH   put the old versions back and restore the tables from a database backup you name")
	fmt.Fprintln(w, "  host recover --keep-current   keep the packs and tables as they are now; the journal is set aside in "+system.BackupsDir)
}

// logRecovery appends the operator's choice and what came of it to
// data/recovery.log.
func logRecovery(root, choice, outcome string, err error) {
	line := fmt.Sprintf("%s host recover %s (pid %d): ", time.Now().UTC().Format(time.RFC3339), choice, os.Getpid())
	if err != nil {
		line += "failed: " + err.Error()
	} else {
		line += outcome
	}
	f, ferr := os.OpenFile(filepath.Join(root, system.DataDir, "recovery.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if ferr != nil {
		return
	}
	defer f.Close()
	_, _ = f.WriteString(strings.ReplaceAll(line, "\n", " ") + "\n")
}
