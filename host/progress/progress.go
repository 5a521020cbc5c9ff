// Package progress shows long work (backup, upgrade, install, download):
// a progress bar per unit of work on a terminal, plain log lines otherwise.
package progress

import (
	"fmt"
	"io"
	"os"
	"sync"

	"github.com/hashicorp/go-hclog"
	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"
)

// IsTerminal reports whether w is a terminal.
func IsTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// Reporter shows the progress of named tasks.
type Reporter struct {
	out io.Writer
	log hclog.Logger
	tty bool

	mu   sync.Mutex
	bars map[string]*progressbar.ProgressBar
}

// New returns a Reporter that draws bars on out when it is a terminal and
// logs to log otherwise.
func New(out io.Writer, log hclog.Logger) *Reporter {
	return &Reporter{out: out, log: log, tty: IsTerminal(out), bars: map[string]*progressbar.ProgressBar{}}
}

// Update reports that task has done current of total units (total 0 when
// unknown), with a short description of what it is doing now.
func (r *Reporter) Update(task string, current, total int64, what string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.tty {
		if total > 0 {
			r.log.Info(task, "done", current, "of", total, "now", what)
		} else {
			r.log.Info(task, "now", what)
		}
		return
	}
	bar, ok := r.bars[task]
	if !ok {
		max := total
		if max <= 0 {
			max = -1
		}
		bar = progressbar.NewOptions64(max,
			progressbar.OptionSetWriter(r.out),
			progressbar.OptionSetDescription(task),
			progressbar.OptionShowCount(),
			progressbar.OptionSetWidth(30),
			progressbar.OptionOnCompletion(func() { fmt.Fprintln(r.out) }),
			progressbar.OptionClearOnFinish(),
		)
		r.bars[task] = bar
	}
	if total > 0 && bar.GetMax64() != total {
		bar.ChangeMax64(total)
	}
	bar.Describe(fmt.Sprintf("%s: %s", task, what))
	_ = bar.Set64(current)
}

// Done marks task finished with a final message.
func (r *Reporter) Done(task, message string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if bar, ok := r.bars[task]; ok {
		_ = bar.Finish()
		delete(r.bars, task)
	}
	if r.tty {
		fmt.Fprintf(r.out, "%s: %s\n", task, message)
		return
	}
	r.log.Info(task, "done", message)
}
