package updatezip

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/Masterminds/semver/v3"

	"github.com/packhost/packhost/host/manifest"
	"github.com/packhost/packhost/host/packs"
	"github.com/packhost/packhost/internal/dbconn"
	"github.com/packhost/packhost/internal/lint"
	"github.com/packhost/packhost/internal/packerr"
	"github.com/packhost/packhost/internal/packpb"
	"github.com/packhost/packhost/internal/schema"
)

// ErrChangedHistory is returned by Build when the schema of a version an
// earlier release recorded differs in this build: released steps were
// changed, removed or reordered. Nothing was written; the author puts the
// released steps back and makes the change a new step.
var ErrChangedHistory = errors.New("a released table history was changed")

// ErrUnmarkedDestructive is returned by Build when a step loses data (a
// destructive lint finding) but is not marked Destructive. Nothing was
// written; the author marks the step, or changes it.
var ErrUnmarkedDestructive = errors.New("a step loses data but is not marked Destructive")

// describeBinary starts the binary (with the PostgreSQL database when one
// is given) and returns its Describe and History answers.
func describeBinary(ctx context.Context, o BuildOptions) (*packpb.DescribeResponse, *packpb.HistoryResponse, []string, error) {
	cfg := o.Launch
	dialects := []string{dbconn.SQLite}
	if o.PostgresDSN != "" {
		cfg.DB, cfg.HasDB = dbconn.Target{Driver: dbconn.Postgres, DSN: o.PostgresDSN}, true
		dialects = append(dialects, dbconn.Postgres)
	} else {
		cfg.DB, cfg.HasDB = dbconn.Target{}, false
	}
	l, err := packs.NewLauncher(cfg)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("build: %w", err)
	}
	defer l.Close()
	p, err := l.StartBinary(ctx, o.Binary)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("build: describe %s: %w", o.Binary, err)
	}
	defer p.Stop()
	h, err := p.RPC().History(ctx, &packpb.HistoryRequest{Dialects: dialects})
	if err != nil {
		err = packerr.FromStatus(err)
		if o.PostgresDSN != "" && !errors.Is(err, packerr.ErrStepFailed) {
			err = fmt.Errorf("%w (PostgreSQL server %s)", err, dbconn.Redact(o.PostgresDSN))
		}
		return nil, nil, nil, fmt.Errorf("build %s %s: compute the schema of every version of its tables: %w", p.Info.Id, p.Info.Version, err)
	}
	return p.Info, h, dialects, nil
}

// manifestHistory turns the pack's History answer on dialects into the
// manifest's, refusing a table whose Create makes another schema than its
// last step.
func manifestHistory(info *packpb.DescribeResponse, resp *packpb.HistoryResponse, dialects []string) (*manifest.History, error) {
	code := map[string]int{}
	for _, t := range info.Tables {
		code[t.Name] = int(t.CodeVersion)
	}
	h := &manifest.History{Format: int(resp.Format), Dialects: dialects, Schemas: []manifest.TableSchema{}}
	var problems []string
	for _, th := range resp.Tables {
		if !h.Has(th.Dialect) {
			h.Dialects = append(h.Dialects, th.Dialect)
		}
		if n, ok := code[th.Table]; !ok || n != len(th.Schemas) {
			return nil, fmt.Errorf("the pack's history of table %s has %d versions, Describe says %d", th.Table, len(th.Schemas), n)
		}
		for i, text := range th.Schemas {
			h.Schemas = append(h.Schemas, manifest.TableSchema{Table: th.Table, Version: i + 1, Dialect: th.Dialect,
				SHA256: manifest.SchemaSHA256(text), Text: text})
		}
		if last := th.Schemas[len(th.Schemas)-1]; th.HasCreate && th.CreateSchema != last {
			d, _ := schema.Diff(last, th.CreateSchema)
			problems = append(problems, fmt.Sprintf("table %s (%s): Create makes another schema than its steps make at version %d (- steps, + Create):\n%s",
				th.Table, th.Dialect, len(th.Schemas), indent(d)))
		}
	}
	if len(problems) > 0 {
		return nil, fmt.Errorf("a fresh install with Create would differ from an upgrade; fix Create:\n%s", strings.Join(problems, "\n"))
	}
	return h, nil
}

// lintedChanges lists every step of every table with what the lint finds
// in it on each dialect of the history.
func lintedChanges(info *packpb.DescribeResponse, h *manifest.History) ([]manifest.DBChange, error) {
	var out []manifest.DBChange
	for _, t := range info.Tables {
		for _, st := range t.Steps {
			c := manifest.DBChange{Table: t.Name, From: int(st.To) - 1, To: int(st.To), Summary: st.Summary, Destructive: st.Destructive}
			var found [][]lint.Finding
			for _, d := range h.Dialects {
				before, _ := h.Schema(t.Name, d, c.From)
				after, _ := h.Schema(t.Name, d, c.To)
				f, err := lint.Step(d, before.Text, after.Text)
				if err != nil {
					return nil, fmt.Errorf("table %s step %d -> %d: %w", t.Name, c.From, c.To, err)
				}
				found = append(found, f)
			}
			c.Lint = lint.Merge(found...)
			out = append(out, c)
		}
	}
	return out, nil
}

// unmarkedDestructive refuses steps with a destructive finding that are not
// marked Destructive, naming each rule.
func unmarkedDestructive(m *manifest.Manifest) error {
	var lines []string
	for _, c := range m.DBChanges {
		if c.Destructive {
			continue
		}
		for _, f := range c.Lint {
			if f.Destructive() {
				lines = append(lines, fmt.Sprintf("  table %s, step %d -> %d (%q): %s %s", c.Table, c.From, c.To, c.Summary, f.Rule, f.Message))
			}
		}
	}
	if len(lines) == 0 {
		return nil
	}
	return fmt.Errorf("%w:\n%s\nmark each such step Destructive (sdk.Step{Destructive: true}) if losing the data is intended, so operators see it before they upgrade; otherwise change the step",
		ErrUnmarkedDestructive, strings.Join(lines, "\n"))
}

// Release is an earlier release of a pack: its manifest and where it was
// read from.
type Release struct {
	Path     string
	Manifest *manifest.Manifest
}

// LoadReleases reads the manifests of earlier releases from paths: update
// zips, pack.json (or *.json manifest) files, or folders holding them
// (not their subfolders). A file that is neither is an error; so is a
// folder's zip whose manifest cannot be read.
func LoadReleases(paths ...string) ([]Release, error) {
	var out []Release
	for _, p := range paths {
		fi, err := os.Stat(p)
		if err != nil {
			return nil, fmt.Errorf("earlier releases: %w", err)
		}
		files := []string{p}
		if fi.IsDir() {
			files = nil
			entries, err := os.ReadDir(p)
			if err != nil {
				return nil, fmt.Errorf("earlier releases: %w", err)
			}
			for _, e := range entries {
				name := strings.ToLower(e.Name())
				if !e.IsDir() && (strings.HasSuffix(name, ".zip") || strings.HasSuffix(name, ".json")) {
					files = append(files, filepath.Join(p, e.Name()))
				}
			}
		}
		for _, f := range files {
			var m *manifest.Manifest
			if strings.HasSuffix(strings.ToLower(f), ".zip") {
				m, err = ReadManifest(f)
			} else {
				m, err = manifest.Load(f)
			}
			if err != nil {
				return nil, fmt.Errorf("earlier releases: %w", err)
			}
			out = append(out, Release{Path: f, Manifest: m})
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Manifest.SemVer().LessThan(out[j].Manifest.SemVer()) })
	return out, nil
}

// Earlier keeps the releases of pack id up to version (inclusive: a
// rebuild of a released version must not change its history either),
// one per version.
func Earlier(all []Release, id, version string) []Release {
	v, err := semver.StrictNewVersion(version)
	if err != nil {
		return nil
	}
	seen := map[string]bool{}
	var out []Release
	for _, r := range all {
		m := r.Manifest
		if m.ID != id || m.SemVer().GreaterThan(v) || seen[m.Version] {
			continue
		}
		seen[m.Version] = true
		out = append(out, r)
	}
	return out
}

// checkPrevious refuses a build whose history differs from an earlier
// release's at a version that release recorded, or that has fewer
// versions of a table than a release had.
func checkPrevious(m *manifest.Manifest, paths []string) ([]Release, []string, error) {
	all, err := LoadReleases(paths...)
	if err != nil {
		return nil, nil, fmt.Errorf("build %s %s: %w", m.ID, m.Version, err)
	}
	prev := Earlier(all, m.ID, m.Version)
	if len(prev) == 0 {
		return nil, []string{fmt.Sprintf("no earlier release of %s was found in %s: the history was not compared with one", m.ID, strings.Join(paths, ", "))}, nil
	}
	var notes, problems []string
	for _, r := range prev {
		p, err := HistoryProblems(m, r.Manifest)
		if err != nil {
			notes = append(notes, fmt.Sprintf("%s %s (%s): %v", r.Manifest.ID, r.Manifest.Version, filepath.Base(r.Path), err))
		}
		for _, x := range p {
			problems = append(problems, fmt.Sprintf("  against %s %s (%s): %s", r.Manifest.ID, r.Manifest.Version, filepath.Base(r.Path), x))
		}
	}
	if len(problems) > 0 {
		return nil, nil, fmt.Errorf("build %s %s: %w:\n%s\nA released step is never edited, removed or reordered: put the released steps back as they were and make the change a new step at the end",
			m.ID, m.Version, ErrChangedHistory, strings.Join(problems, "\n"))
	}
	return prev, notes, nil
}

// HistoryProblems compares m's history with an earlier release's, one
// problem per table whose released versions m does not keep. err says
// why the histories could not be compared (a release built before
// histories were recorded, or under other text rules); then only the
// tables' versions are compared.
func HistoryProblems(m, released *manifest.Manifest) (problems []string, err error) {
	have := m.Tables()
	for _, t := range sortedKeys(released.Tables()) {
		n := released.Tables()[t]
		switch got, ok := have[t]; {
		case !ok:
			problems = append(problems, fmt.Sprintf("table %s, released at version %d, is no longer declared", t, n))
		case got < n:
			problems = append(problems, fmt.Sprintf("table %s has %d versions, the release had %d", t, got, n))
		}
	}
	if released.History == nil {
		return problems, errors.New("it records no schema history (built by an older host): only its tables' versions were compared")
	}
	changes, ok := m.History.Changes(released.History)
	if !ok {
		return problems, fmt.Errorf("its history is in text format %d, this build's in %d: only its tables' versions were compared", released.History.Format, m.History.Format)
	}
	for _, c := range changes {
		if c.Now == "" {
			continue // reported above as a missing table or version
		}
		problems = append(problems, fmt.Sprintf("table %s, version %d (%s): the schema differs (- released, + this build):\n%s",
			c.Table, c.Version, c.Dialect, indent(c.Diff())))
	}
	return problems, nil
}

func indent(s string) string {
	s = strings.TrimRight(s, "\n")
	return "      " + strings.ReplaceAll(s, "\n", "\n      ")
}
