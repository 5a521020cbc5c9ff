package main

import (
	"fmt"
	"html"
	"net/http"
)

// pages serves the core pack's home page.
func pages() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprintf(w, `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>packhost</title></head>
<body><h1>packhost</h1><p>This host is running the core pack %s.</p><p><a href="/admin/">Administration</a></p></body></html>`,
			html.EscapeString(version))
	})
	return mux
}
