package main

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/heraldpush/herald/push/auth"
)

// TestPublicPagesOnlyInDevModeOrWhenEnabled: the demo page, the log tail
// and the client's files are on the public listener in dev mode or with
// public_pages, and nowhere else (there / is the API's JSON 404); the
// admin listener always serves its status page. The API behind the pages
// answers as before.
func TestPublicPagesOnlyInDevModeOrWhenEnabled(t *testing.T) {
	_, hash, err := auth.GenerateAPIKey()
	if err != nil {
		t.Fatal(err)
	}
	prod := func(pages bool) func(*Config) {
		return func(c *Config) {
			c.Dev = false
			c.PublicPages = pages
			c.Auth.APIKeys = []auth.APIKeyConfig{{ID: "svc", Hash: hash, Publish: []string{"*"}}}
		}
	}
	get := func(url string) (int, string, string) {
		t.Helper()
		resp, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		return resp.StatusCode, resp.Header.Get("Content-Type"), string(b)
	}
	for _, tc := range []struct {
		name   string
		mutate func(*Config)
		pages  bool
	}{
		{"dev", nil, true},
		{"production", prod(false), false},
		{"production with public_pages", prod(true), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := MustRunMain(t, tc.mutate)
			for _, path := range []string{"/", "/logs", "/_herald/src/herald.js"} {
				code, ctype, body := get(m.URL() + path)
				switch {
				case tc.pages && (code != 200 || !(strings.HasPrefix(ctype, "text/html") || strings.HasPrefix(ctype, "text/javascript"))):
					t.Errorf("GET %s: %d %s, want the page", path, code, ctype)
				case !tc.pages && (code != 404 || !strings.Contains(body, `"not_found"`)):
					t.Errorf("GET %s: %d %q, want the API's JSON 404", path, code, body)
				}
			}
			if code, _, body := get(m.URL() + "/readyz"); code != 200 || !strings.Contains(body, "ready") {
				t.Errorf("API behind the pages: /readyz %d %s", code, body)
			}
			code, ctype, body := get(m.AdminURL() + "/")
			if code != 200 || !strings.HasPrefix(ctype, "text/html") || !strings.Contains(body, `content="`+Version+`"`) {
				t.Errorf("admin status page: %d %s\n%s", code, ctype, body)
			}
			if code, _, _ := get(m.AdminURL() + "/_herald/pages/status.js"); code != 200 {
				t.Errorf("admin status script: %d", code)
			}
		})
	}
}
