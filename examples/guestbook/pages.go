package main

import (
	"html/template"
	"net/http"
	"strings"
	"time"

	"github.com/packhost/packhost/plugins/sdk"
)

type entry struct {
	ID        int64
	FirstName string
	LastName  string
	Message   string
	CreatedAt time.Time
}

var page = template.Must(template.New("page").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Guest book</title></head>
<body><h1>Guest book</h1>
<form method="post" action="/guestbook/">
<p><label>First name <input name="first_name" required maxlength="100"></label>
<label>Last name <input name="last_name" maxlength="100"></label></p>
<p><label>Message<br><textarea name="message" required maxlength="2000"></textarea></label></p>
<p><button>Sign</button></p></form>
{{range .}}<article><h2>{{.FirstName}} {{.LastName}}</h2><p>{{.Message}}</p><small>{{.CreatedAt.Format "2006-01-02 15:04"}}</small></article>
{{else}}<p>No entries yet. Be the first.</p>{{end}}
</body></html>
`))

func pages() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /guestbook/{$}", list)
	mux.HandleFunc("POST /guestbook/{$}", sign)
	return mux
}

func list(w http.ResponseWriter, r *http.Request) {
	db, err := sdk.DB(r.Context())
	if err != nil {
		http.Error(w, "the guest book is not available: "+err.Error(), http.StatusServiceUnavailable)
		return
	}
	var rows []entry
	if err := db.Table("entries").Order("id DESC").Limit(50).Find(&rows).Error; err != nil {
		http.Error(w, "read entries: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_ = page.Execute(w, rows)
}

func sign(w http.ResponseWriter, r *http.Request) {
	first := strings.TrimSpace(r.FormValue("first_name"))
	msg := strings.TrimSpace(r.FormValue("message"))
	if first == "" || msg == "" || len(first) > 100 || len(msg) > 2000 {
		http.Error(w, "a first name and a message are needed (at most 100 and 2000 characters)", http.StatusBadRequest)
		return
	}
	db, err := sdk.DB(r.Context())
	if err != nil {
		http.Error(w, "the guest book is not available: "+err.Error(), http.StatusServiceUnavailable)
		return
	}
	e := map[string]any{
		"first_name": first, "last_name": strings.TrimSpace(r.FormValue("last_name")),
		"message": msg, "created_at": time.Now().UTC(),
	}
	if err := db.Table("entries").Create(e).Error; err != nil {
		http.Error(w, "save entry: "+err.Error(), http.StatusInternalServerError)
		return
	}
	http.Redirect(w, r, "/guestbook/", http.StatusSeeOther)
}
