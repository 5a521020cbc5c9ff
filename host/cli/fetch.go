package cli

import (
	"fmt"
	"io"
	"os"
	"text/tabwriter"
	"time"

	"github.com/packhost/packhost/host/feed"
	"github.com/packhost/packhost/host/progress"
	"github.com/packhost/packhost/host/report"
)

// updatesFetchCmd is `host updates fetch [--feed URL]`: read the feed,
// download what is newer than installed and not pending into
// Updates_Pending.
func updatesFetchCmd(e env, args []string) (int, error) {
	var c common
	var feedURL string
	var checkOnly bool
	fs := newFlags(e, "updates fetch")
	c.register(fs)
	fs.StringVar(&feedURL, "feed", "", "feed URL (default: feed.url in <root>/host.json)")
	fs.BoolVar(&checkOnly, "check", false, "only say what the feed offers; download nothing")
	if err := parse(fs, args); err != nil {
		return 0, err
	}
	if fs.NArg() > 0 {
		return 0, usageErr("host updates fetch takes no arguments, got %q", fs.Args())
	}
	if fi, err := os.Stat(c.root); err != nil || !fi.IsDir() {
		return 1, fmt.Errorf("system directory %s does not exist or is not a directory; create it or pass --root", c.root)
	}
	if feedURL == "" {
		hc, err := feed.LoadHostConfig(c.root)
		if err != nil {
			return 1, err
		}
		feedURL = hc.Feed.URL
	}
	if feedURL == "" {
		return 0, usageErr("no feed: pass --feed URL or set \"feed\": {\"url\": ...} in %s", feed.HostConfigFile)
	}
	log := c.logger(e)
	f := &feed.Fetcher{Root: c.root, URL: feedURL, Log: log, Command: "host updates fetch", LockWait: c.lockWait}
	if progress.IsTerminal(e.stdout) {
		f.Progress = progress.New(e.stdout, log)
	}
	var res *feed.Result
	var err error
	if checkOnly {
		res, err = f.Check(e.ctx)
	} else {
		res, err = f.Fetch(e.ctx)
	}
	if res != nil {
		writeFeedResult(e.stdout, res)
	}
	if err != nil {
		return 1, err
	}
	return 0, nil
}

func writeFeedResult(w io.Writer, res *feed.Result) {
	signed := "unsigned (no trusted keys)"
	if res.SignedBy != "" {
		signed = "signed by " + res.SignedBy
	}
	fmt.Fprintf(w, "Feed      %s\nSequence  %d, expires %s, %s\n\n", res.URL, res.Sequence, res.Expires.UTC().Format("2006-01-02 15:04 UTC"), signed)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "PACK\tVERSION\tINSTALLED\tSIZE\tSTATE\tDETAIL")
	if len(res.Updates) == 0 {
		fmt.Fprintln(tw, "(the feed lists no updates)\t\t\t\t\t")
	}
	for _, u := range res.Updates {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\n", u.PackID, u.Version, report.Dash(u.Installed), u.Size, u.State, report.Dash(u.Detail))
	}
	_ = tw.Flush()
}

// feedWarnings says, reading only, when the configured update feed has
// not verified on this system for longer than it should have: a stalled
// or frozen feed is seen whatever stalls or freezes it.
func feedWarnings(root string) []string {
	hc, err := feed.LoadHostConfig(root)
	if err != nil || hc.Feed.URL == "" {
		return nil
	}
	last, ok := feed.LastVerified(root, hc.Feed.URL)
	if !ok {
		return []string{fmt.Sprintf("the update feed %s has never verified on this system: run `host updates fetch --check` to see why", hc.Feed.URL)}
	}
	if age := time.Since(last); age > hc.Feed.StaleAfter() {
		return []string{fmt.Sprintf("the update feed %s last verified %s (%s ago, longer than %s): a stalled or frozen feed hides updates; run `host updates fetch --check` to see why",
			hc.Feed.URL, last.UTC().Format("2006-01-02 15:04 UTC"), age.Round(time.Minute), hc.Feed.StaleAfter())}
	}
	return nil
}
