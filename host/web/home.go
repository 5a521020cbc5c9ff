package web

import (
	"bytes"
	"net/http"
	"sort"
)

// homePage is what the home page shows.
type homePage struct {
	Pages []homeEntry
	// Admin links the admin pages, when they are served on this address.
	Admin bool
	// Core is the version of the core pack serving "/", "" when none does.
	Core string
}

type homeEntry struct {
	Prefix, ID, Version, Description string
}

// home answers "/" itself: a list of the packs that serve pages, linked
// to their prefixes. The pack at "/" (core) is the catch-all for every
// other path, so it is not listed.
func (s *Server) home(w http.ResponseWriter, r *http.Request) {
	d := homePage{Admin: s.cfg.AdminAddr == ""}
	for _, rt := range s.proxy.table.Load().routes {
		switch {
		case rt.conflict != "":
		case rt.prefix == "/":
			if rt.pack.ID == "core" {
				d.Core = rt.pack.Info.Version
			}
		default:
			d.Pages = append(d.Pages, homeEntry{Prefix: rt.prefix, ID: rt.pack.ID, Version: rt.pack.Info.Version, Description: rt.pack.Info.Description})
		}
	}
	sort.Slice(d.Pages, func(i, j int) bool { return d.Pages[i].Prefix < d.Pages[j].Prefix })
	var buf bytes.Buffer
	if err := pageTmpl.ExecuteTemplate(&buf, "home.html", d); err != nil {
		s.log.Error("render home page", "error", err)
		http.Error(w, "internal error rendering the page; see the host's log", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-cache")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'")
	_, _ = w.Write(buf.Bytes())
}
