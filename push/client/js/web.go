// Package js embeds Herald's JavaScript client (src/) and the pages built
// on it (pages/) so that a node serves them without a CDN or a build step:
// the demo page and the log tail on the public listener, the status page
// on the admin listener (docs/js-client.md).
//
// The files are served as written: ESM modules that browsers load as is.
// Every page is a fixed HTML document with a strict Content-Security-Policy
// (scripts, styles and connections from the serving origin only); the few
// values a page needs from the node (its version) travel in a <meta> tag.
package js

import (
	"bytes"
	"embed"
	"html/template"
	"io/fs"
	"net/http"
	"strings"
)

//go:embed src/*.js src/*.d.ts pages/*.html pages/*.js pages/*.css
var files embed.FS

// AssetPrefix is where Assets is mounted on both listeners.
const AssetPrefix = "/_herald/"

// Page names accepted by PageHandler.
const (
	PageDemo   = "demo"
	PageLogs   = "logs"
	PageStatus = "status"
)

// cspFor confines a page to its own origin: no inline script, no CDN.
// The public pages may also connect to other regions (the client follows
// herald.moved and alternates there); the status page reads its own
// listener only.
func cspFor(name string) string {
	connect := "'self'"
	if name != PageStatus {
		connect = "'self' http: https:"
	}
	return "default-src 'self'; script-src 'self'; style-src 'self'; connect-src " + connect +
		"; img-src 'self' data:; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
}

// Assets serves the client modules (/_herald/src/…) and the pages' scripts
// and styles (/_herald/pages/…). Mount it at AssetPrefix.
func Assets() http.Handler {
	fsrv := http.FileServerFS(files)
	return http.StripPrefix(strings.TrimSuffix(AssetPrefix, "/"), http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/") || strings.HasSuffix(r.URL.Path, ".html") {
			http.NotFound(w, r) // no listings; pages are served by PageHandler
			return
		}
		h := w.Header()
		h.Set("Cache-Control", "no-cache")
		h.Set("X-Content-Type-Options", "nosniff")
		if strings.HasSuffix(r.URL.Path, ".js") {
			h.Set("Content-Type", "text/javascript; charset=utf-8")
		}
		fsrv.ServeHTTP(w, r)
	}))
}

// PageInfo is what a page shows about the node serving it.
type PageInfo struct {
	// Version of the herald binary.
	Version string
}

// PageHandler returns the handler of one page (PageDemo, PageLogs,
// PageStatus), rendered once with info.
func PageHandler(name string, info PageInfo) (http.Handler, error) {
	raw, err := fs.ReadFile(files, "pages/"+name+".html")
	if err != nil {
		return nil, err
	}
	tpl, err := template.New(name).Parse(string(raw))
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	if err := tpl.Execute(&buf, struct {
		PageInfo
		Assets string
	}{info, AssetPrefix}); err != nil {
		return nil, err
	}
	body, policy := buf.Bytes(), cspFor(name)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Type", "text/html; charset=utf-8")
		h.Set("Content-Security-Policy", policy)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cache-Control", "no-cache")
		_, _ = w.Write(body)
	}), nil
}
