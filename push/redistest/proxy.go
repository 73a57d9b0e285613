package redistest

import (
	"net/http/httptest"
	"testing"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	toxiclient "github.com/Shopify/toxiproxy/v2/client"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
)

// StartProxy runs toxiproxy's API in-process and returns a proxy to
// upstream on a free loopback port (its Listen field): a fault-injectable
// link (Disable cuts it, latency toxics slow it). The test owns both.
func StartProxy(tb testing.TB, name, upstream string) *toxiclient.Proxy {
	tb.Helper()
	srv := toxiproxy.NewServer(toxiproxy.NewMetricsContainer(prometheus.NewRegistry()), zerolog.Nop())
	api := httptest.NewServer(srv.Routes())
	tb.Cleanup(api.Close)
	px, err := toxiclient.NewClient(api.URL).CreateProxy(name, "127.0.0.1:0", upstream)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = px.Delete() })
	return px
}
