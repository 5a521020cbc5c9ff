package web

import (
	"bytes"
	"errors"
	"fmt"
	"html/template"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/yuin/goldmark"

	"github.com/packhost/packhost/host/backup"
	"github.com/packhost/packhost/host/manifest"
	"github.com/packhost/packhost/host/report"
	"github.com/packhost/packhost/host/system"
	"github.com/packhost/packhost/host/trust"
	"github.com/packhost/packhost/host/updatezip"
	"github.com/packhost/packhost/internal/naming"
)

const (
	pendingDir   = system.PendingDir
	installedDir = system.InstalledDir
	backupsDir   = system.BackupsDir
)

// markdown renders whats_new. Raw HTML in the text is dropped and
// javascript: links are not linked (goldmark's defaults without
// WithUnsafe), so a zip cannot script the admin page.
var markdown = goldmark.New()

func renderMarkdown(src string) template.HTML {
	var buf bytes.Buffer
	if err := markdown.Convert([]byte(src), &buf); err != nil {
		return template.HTML("<pre>" + template.HTMLEscapeString(src) + "</pre>")
	}
	return template.HTML(buf.String()) // #nosec: goldmark escapes text and omits raw HTML
}

// pendingView is a pending update zip as the status page shows it.
type pendingView struct {
	report.PendingUpdate
	WhatsNewHTML  template.HTML
	SignatureText string
	SignatureOK   bool
}

// pendingDetails describes each pending zip: whats_new rendered, db_changes,
// signature status and problems, as host/updatezip's inspection finds them
// (the same as `host status`). When the report carries only file names, the
// zips are inspected here. trust says how the system checks signatures.
func pendingDetails(root string, rep *report.Report) ([]pendingView, string) {
	keys, kerr := trust.LoadTrustedKeys(root)
	trust := "No trusted keys in trusted_keys/: unsigned update zips are accepted."
	if kerr != nil {
		trust = "Trusted keys could not be read: " + kerr.Error()
	} else if len(keys) > 0 {
		names := make([]string, len(keys))
		for i, k := range keys {
			names[i] = k.Name
		}
		trust = fmt.Sprintf("Update zips must be signed by a trusted key (%s).", strings.Join(names, ", "))
	}
	list := rep.PendingUpdates
	detailed := true
	for _, u := range list {
		if u.Signature == "" {
			detailed = false
		}
	}
	if !detailed {
		zips, err := updatezip.Inspect(root, updatezip.Options{})
		if err != nil {
			trust += " Inspecting the pending zips failed: " + err.Error()
		} else {
			list = updatezip.Reports(zips)
		}
	}
	var out []pendingView
	for _, u := range list {
		v := pendingView{PendingUpdate: u, WhatsNewHTML: renderMarkdown(u.WhatsNew)}
		switch u.Signature {
		case updatezip.SigSigned:
			v.SignatureText, v.SignatureOK = "signed by "+u.SignedBy, true
		case updatezip.SigUnsigned:
			v.SignatureText, v.SignatureOK = "unsigned", len(keys) == 0 && kerr == nil
			if v.SignatureOK {
				v.SignatureText += " (accepted: no trusted keys)"
			}
		case updatezip.SigUnverified:
			v.SignatureText, v.SignatureOK = "signed, not verified (no trusted keys)", true
		case updatezip.SigInvalid:
			v.SignatureText = "invalid"
		default:
			v.SignatureText = "unknown"
		}
		out = append(out, v)
	}
	return out, trust
}

// Backup is one entry of Updates_Backups: a database backup as
// host/backup.List describes it (Kind "database"), or a system backup
// (Kind "system": Name, Path, CreatedAt and Size only).
type Backup struct {
	Kind string `json:"kind"`
	backup.Info
}

// listBackups lists Updates_Backups, newest first: the database backups
// through host/backup.List, and the system-<ts>.zip files that
// host/install writes, which that list does not cover.
func listBackups(dir string) ([]Backup, error) {
	dbs, err := backup.List(dir)
	if err != nil {
		return nil, err
	}
	out := []Backup{}
	for _, b := range dbs {
		out = append(out, Backup{Kind: "database", Info: b})
	}
	zips, err := filepath.Glob(filepath.Join(dir, "system-*.zip"))
	if err != nil {
		return nil, fmt.Errorf("list backups: %w", err)
	}
	for _, p := range zips {
		at, ok := naming.StampIn(filepath.Base(p))
		fi, err := os.Stat(p)
		if !ok || err != nil || !fi.Mode().IsRegular() {
			continue
		}
		out = append(out, Backup{Kind: "system", Info: backup.Info{Path: p, Name: filepath.Base(p), CreatedAt: at, Size: fi.Size()}})
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].CreatedAt.After(out[j].CreatedAt) })
	return out, nil
}

// Installed is one zip of Updates_Installed.
type Installed struct {
	File        string              `json:"file"`
	PackID      string              `json:"pack_id"`
	Version     string              `json:"version"`
	Released    string              `json:"released,omitempty"`
	InstalledAt time.Time           `json:"installed_at"`
	Size        int64               `json:"size"`
	WhatsNew    string              `json:"whats_new,omitempty"`
	DBChanges   []manifest.DBChange `json:"db_changes,omitempty"`
	Problem     string              `json:"problem,omitempty"`

	WhatsNewHTML template.HTML `json:"-"`
}

// listInstalled lists Updates_Installed, newest first, with each zip's
// manifest.
func listInstalled(dir string) ([]Installed, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return []Installed{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", installedDir, err)
	}
	out := []Installed{}
	for _, e := range entries {
		if e.IsDir() || !strings.HasSuffix(strings.ToLower(e.Name()), ".zip") {
			continue
		}
		info, err := e.Info()
		if err != nil {
			continue
		}
		it := Installed{File: e.Name(), Size: info.Size(), InstalledAt: info.ModTime().UTC()}
		if ts, ok := naming.StampIn(e.Name()); ok {
			it.InstalledAt = ts
		}
		m, err := updatezip.ReadManifest(filepath.Join(dir, e.Name()))
		if err != nil {
			it.Problem = err.Error()
		} else {
			it.PackID, it.Version, it.Released, it.WhatsNew, it.DBChanges = m.ID, m.Version, m.Released, m.WhatsNew, m.DBChanges
			it.WhatsNewHTML = renderMarkdown(m.WhatsNew)
		}
		out = append(out, it)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].InstalledAt.After(out[j].InstalledAt) })
	return out, nil
}

func humanSize(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
