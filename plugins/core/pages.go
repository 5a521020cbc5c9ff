package main

import (
	"io"
	"net/http"
)

// pages are the core pack's pages under "/", the catch-all for every path
// no other pack claims. The host answers "/" itself with the home page
// that lists the packs' pages, so what reaches core here is an address
// where no page lives.
func pages() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.WriteHeader(http.StatusNotFound)
		_, _ = io.WriteString(w, notFound)
	})
}

const notFound = `<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><title>Not found</title>
<style>body{font-family:system-ui,sans-serif;margin:0;color:#1d2430;background:#f6f7f9;line-height:1.45}
header{background:#1d2430;color:#fff;padding:.6em 1.2em}main{max-width:72em;margin:0 auto;padding:1em 1.2em 3em}a{color:#1f5fbf}</style></head>
<body><header><strong>packhost</strong></header><main><h1>Not found</h1><p>No page lives at this address. <a href="/">The home page</a> lists the pages on this host.</p></main></body></html>
`
