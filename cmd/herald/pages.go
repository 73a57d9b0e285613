package main

import (
	"net/http"
	"strings"

	"github.com/heraldpush/herald/push/client/js"
)

// publicPages puts the demo page (/), the log tail (/logs) and the client's
// files (/_herald/…) in front of the public API. Every other request goes
// to the API untouched (no path cleaning or redirects of its own).
type publicPages struct {
	demo, logs, assets, api http.Handler
}

// withPublicPages wraps the public API handler with the pages
// (public_pages, or dev mode).
func withPublicPages(api http.Handler) (http.Handler, error) {
	demo, err := js.PageHandler(js.PageDemo, js.PageInfo{Version: Version})
	if err != nil {
		return nil, err
	}
	logs, err := js.PageHandler(js.PageLogs, js.PageInfo{Version: Version})
	if err != nil {
		return nil, err
	}
	return &publicPages{demo: demo, logs: logs, assets: js.Assets(), api: api}, nil
}

func (p *publicPages) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		switch path := r.URL.Path; {
		case path == "/":
			p.demo.ServeHTTP(w, r)
			return
		case path == "/logs":
			p.logs.ServeHTTP(w, r)
			return
		case strings.HasPrefix(path, js.AssetPrefix):
			p.assets.ServeHTTP(w, r)
			return
		}
	}
	p.api.ServeHTTP(w, r)
}

// statusPage is the admin listener's status page (/).
func statusPage() http.Handler {
	h, err := js.PageHandler(js.PageStatus, js.PageInfo{Version: Version})
	if err != nil { // the page is embedded: only a broken build gets here
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, "status page unavailable: "+err.Error(), http.StatusInternalServerError)
		})
	}
	return h
}
