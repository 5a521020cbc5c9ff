package web

import (
	"bytes"
	"embed"
	"encoding/json"
	"html/template"
	"net/http"
	"time"

	"github.com/packhost/packhost/host/decide"
	"github.com/packhost/packhost/host/report"
)

//go:embed templates/*.html
var templateFS embed.FS

var pageTmpl = template.Must(template.New("").Funcs(template.FuncMap{
	"size": humanSize,
	"time": func(t time.Time) string {
		if t.IsZero() {
			return "-"
		}
		return t.UTC().Format("2006-01-02 15:04:05 UTC")
	},
	"exitMeaning": report.ExitMeaning,
}).ParseFS(templateFS, "templates/*.html"))

// admin is the /admin/ tree: the login form answers without a token,
// everything else needs it. Cross-origin POSTs are refused outright.
func (s *Server) admin() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /admin/login", s.login)
	mux.HandleFunc("POST /admin/login", s.login)

	authed := http.NewServeMux()
	authed.HandleFunc("GET /admin/{$}", s.statusPage)
	authed.HandleFunc("GET /admin/backups", s.backupsPage)
	authed.HandleFunc("GET /admin/history", s.historyPage)
	authed.HandleFunc("GET /admin/decisions", s.decisionsPage)
	authed.HandleFunc("POST /admin/logout", s.logout)
	authed.HandleFunc("POST /admin/feed/check", s.feedAction(false))
	authed.HandleFunc("POST /admin/feed/fetch", s.feedAction(true))
	authed.HandleFunc("GET /admin/api/status", s.apiStatus)
	authed.HandleFunc("GET /admin/api/backups", s.apiJSON(func(r *http.Request) (any, error) { return listBackups(s.cfg.System.Path(backupsDir)) }))
	authed.HandleFunc("GET /admin/api/history", s.apiJSON(func(r *http.Request) (any, error) { return listInstalled(s.cfg.System.Path(installedDir)) }))
	authed.HandleFunc("GET /admin/api/decisions", s.apiJSON(func(r *http.Request) (any, error) { return s.decisions(), nil }))
	authed.HandleFunc("GET /admin/api/feed", s.apiJSON(func(r *http.Request) (any, error) { return s.feed.status(), nil }))
	authed.HandleFunc("/admin/", func(w http.ResponseWriter, r *http.Request) {
		if len(r.URL.Path) > len("/admin/api/") && r.URL.Path[:len("/admin/api/")] == "/admin/api/" {
			writeJSON(w, http.StatusNotFound, map[string]string{"error": "no such API: " + r.URL.Path})
			return
		}
		errorPage(w, http.StatusNotFound, "Not found", "No admin page lives at this address.")
	})
	mux.Handle("/admin/", s.requireAuth(authed))

	cop := http.NewCrossOriginProtection()
	return noStore(cop.Handler(limitAdminBody(mux)))
}

// maxAdminBody bounds the body of an admin request: the forms are small.
const maxAdminBody = 64 << 10

func limitAdminBody(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.Body = http.MaxBytesReader(w, r.Body, maxAdminBody)
		h.ServeHTTP(w, r)
	})
}

// noStore keeps admin pages out of shared caches and frames.
func noStore(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		w.Header().Set("X-Frame-Options", "DENY")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.Header().Set("Referrer-Policy", "same-origin")
		w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; form-action 'self'; frame-ancestors 'none'")
		h.ServeHTTP(w, r)
	})
}

// page is what every admin template gets.
type page struct {
	Title string
	Nav   string
	CSRF  string
	Data  any
}

func (s *Server) render(w http.ResponseWriter, r *http.Request, code int, name string, data any) {
	var buf bytes.Buffer
	p := page{Title: titles[name], Nav: name, Data: data}
	if name != "login" {
		p.CSRF = authFrom(r).csrf
	}
	if err := pageTmpl.ExecuteTemplate(&buf, name+".html", p); err != nil {
		s.log.Error("render admin page", "page", name, "error", err)
		http.Error(w, "internal error rendering the page; see the host's log", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(code)
	_, _ = w.Write(buf.Bytes())
}

var titles = map[string]string{
	"login":     "Log in",
	"status":    "Status",
	"backups":   "Backups",
	"history":   "Installed updates",
	"decisions": "Start decisions",
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func (s *Server) apiJSON(f func(r *http.Request) (any, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		v, err := f(r)
		if err != nil {
			writeJSON(w, http.StatusInternalServerError, map[string]string{"error": err.Error()})
			return
		}
		writeJSON(w, http.StatusOK, v)
	}
}

// apiStatus is the JSON twin of the status page: the document of
// `host status --json`.
func (s *Server) apiStatus(w http.ResponseWriter, r *http.Request) {
	rep, err := s.cfg.Report(r.Context())
	if err != nil {
		writeJSON(w, http.StatusInternalServerError, map[string]string{"error": "status report: " + err.Error()})
		return
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	_ = rep.WriteJSON(w)
}

type statusData struct {
	// PageProblems are the packs whose pages are refused (duplicate
	// prefixes).
	PageProblems []string
	Report       *report.Report
	Err          string
	Pending      []pendingView
	Feed         feedStatus
	Maint        bool
	Reason       string
	Trust        string
	Decision     []decide.Decision
}

func (s *Server) statusPage(w http.ResponseWriter, r *http.Request) {
	d := statusData{Maint: s.cfg.AdminOnly, Reason: s.cfg.Reason, Feed: s.feed.status(), PageProblems: s.PageProblems()}
	rep, err := s.cfg.Report(r.Context())
	if err != nil {
		d.Err = err.Error()
	} else {
		d.Report = rep
		d.Pending, d.Trust = pendingDetails(s.cfg.System.Root, rep)
	}
	s.render(w, r, http.StatusOK, "status", d)
}

func (s *Server) backupsPage(w http.ResponseWriter, r *http.Request) {
	list, err := listBackups(s.cfg.System.Path(backupsDir))
	s.render(w, r, http.StatusOK, "backups", listData{Items: list, Err: errText(err)})
}

func (s *Server) historyPage(w http.ResponseWriter, r *http.Request) {
	list, err := listInstalled(s.cfg.System.Path(installedDir))
	s.render(w, r, http.StatusOK, "history", listData{Items: list, Err: errText(err)})
}

func (s *Server) decisionsPage(w http.ResponseWriter, r *http.Request) {
	s.render(w, r, http.StatusOK, "decisions", listData{Items: s.decisions()})
}

func (s *Server) decisions() []decide.Decision {
	if s.cfg.Decisions == nil {
		return []decide.Decision{}
	}
	return s.cfg.Decisions
}

type listData struct {
	Items any
	Err   string
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func (s *Server) feedAction(download bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !s.csrfOK(r) {
			http.Error(w, "form expired: reload the page and try again", http.StatusForbidden)
			return
		}
		s.feed.check(r.Context(), download)
		http.Redirect(w, r, "/admin/#feed", http.StatusSeeOther)
	}
}

var maintenanceTmpl = template.Must(template.New("maintenance").Parse(`<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Down for maintenance</title>
<style>body{font-family:system-ui,sans-serif;max-width:40em;margin:4em auto;padding:0 1em;color:#222}</style></head>
<body><h1>Down for maintenance</h1><p>This site is being updated and will be back shortly.</p>{{if .}}<p>{{.}}</p>{{end}}</body></html>
`))

// maintenance answers every page but /admin while the host serves only the
// admin pages.
func maintenance(w http.ResponseWriter, reason string) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Retry-After", RetryAfter)
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusServiceUnavailable)
	_ = maintenanceTmpl.Execute(w, reason)
}
