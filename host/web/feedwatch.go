package web

import (
	"context"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/packhost/packhost/host/feed"
)

// feedWatcher checks the update feed while the host serves: periodically
// when the configuration asks for it (opt-in), and when the admin presses
// the button. The status page shows the last result.
type feedWatcher struct {
	root string
	cfg  feed.Config
	log  hclog.Logger

	mu      sync.Mutex // serializes checks
	stateMu sync.Mutex
	last    feedStatus
}

// feedStatus is what the admin page and /admin/api/feed show.
type feedStatus struct {
	URL           string       `json:"url"`
	CheckInterval string       `json:"check_interval,omitempty"`
	Checked       time.Time    `json:"checked,omitzero"`
	Downloaded    bool         `json:"downloaded"`
	Result        *feed.Result `json:"result,omitempty"`
	Error         string       `json:"error,omitempty"`
}

func newFeedWatcher(root string, cfg feed.Config, log hclog.Logger) *feedWatcher {
	w := &feedWatcher{root: root, cfg: cfg, log: log}
	w.last.URL = cfg.URL
	if cfg.CheckInterval > 0 {
		w.last.CheckInterval = time.Duration(cfg.CheckInterval).String()
	}
	return w
}

// run checks every CheckInterval until ctx ends; it returns at once when
// the periodic check is off.
func (w *feedWatcher) run(ctx context.Context) {
	if w.cfg.URL == "" || w.cfg.CheckInterval <= 0 {
		return
	}
	t := time.NewTicker(time.Duration(w.cfg.CheckInterval))
	defer t.Stop()
	for {
		w.check(ctx, w.cfg.Download)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (w *feedWatcher) check(ctx context.Context, download bool) {
	if w.cfg.URL == "" {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	f := &feed.Fetcher{Root: w.root, URL: w.cfg.URL, Log: w.log}
	var res *feed.Result
	var err error
	if download {
		res, err = f.Fetch(ctx)
	} else {
		res, err = f.Check(ctx)
	}
	st := feedStatus{URL: w.cfg.URL, CheckInterval: w.last.CheckInterval, Checked: time.Now().UTC(), Downloaded: download, Result: res}
	if err != nil {
		st.Error = err.Error()
		w.log.Warn("feed check failed", "url", w.cfg.URL, "error", err)
	} else if n := res.Available(); n > 0 {
		w.log.Info("the update feed offers updates", "count", n, "url", w.cfg.URL)
	}
	w.stateMu.Lock()
	w.last = st
	w.stateMu.Unlock()
}

func (w *feedWatcher) status() feedStatus {
	w.stateMu.Lock()
	defer w.stateMu.Unlock()
	return w.last
}
