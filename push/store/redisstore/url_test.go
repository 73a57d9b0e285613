package redisstore

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

func TestParseURL(t *testing.T) {
	tests := []struct {
		url   string
		check func(t *testing.T, o *optsView)
		err   string
	}{
		{url: "redis://127.0.0.1:6380", check: func(t *testing.T, o *optsView) {
			o.addrs(t, "127.0.0.1:6380")
			if o.DB != 0 || o.TLSConfig != nil || o.IsClusterMode || o.MasterName != "" || !o.ContextTimeoutEnabled {
				t.Fatalf("%+v", o.UniversalOptions)
			}
		}},
		{url: "redis://localhost", check: func(t *testing.T, o *optsView) { o.addrs(t, "localhost:6379") }},
		{url: "redis://user:p%40ss@h:1/3", check: func(t *testing.T, o *optsView) {
			o.addrs(t, "h:1")
			if o.Username != "user" || o.Password != "p@ss" || o.DB != 3 {
				t.Fatalf("%+v", o.UniversalOptions)
			}
		}},
		{url: "redis://:secret@h:1", check: func(t *testing.T, o *optsView) {
			if o.Username != "" || o.Password != "secret" {
				t.Fatalf("%+v", o.UniversalOptions)
			}
		}},
		{url: "rediss://cache.example.com:6380/0?dial_timeout=1s&read_timeout=0.5&pool_size=20&client_name=herald&protocol=2",
			check: func(t *testing.T, o *optsView) {
				o.addrs(t, "cache.example.com:6380")
				if o.TLSConfig == nil || o.TLSConfig.ServerName != "cache.example.com" || o.TLSConfig.MinVersion == 0 {
					t.Fatalf("TLS %+v", o.TLSConfig)
				}
				if o.DialTimeout != time.Second || o.ReadTimeout != 500*time.Millisecond || o.PoolSize != 20 ||
					o.ClientName != "herald" || o.Protocol != 2 {
					t.Fatalf("%+v", o.UniversalOptions)
				}
			}},
		{url: "redis://[::1]:7000", check: func(t *testing.T, o *optsView) { o.addrs(t, "[::1]:7000") }},
		{url: "redis+sentinel://127.0.0.1:1,127.0.0.1:2,127.0.0.1:3/mymaster", check: func(t *testing.T, o *optsView) {
			o.addrs(t, "127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3")
			if o.MasterName != "mymaster" || o.IsClusterMode {
				t.Fatalf("%+v", o.UniversalOptions)
			}
		}},
		{url: "redis+sentinel://u:pw@s1,s2:26380/primary/2?sentinel_password=sp&sentinel_username=su", check: func(t *testing.T, o *optsView) {
			o.addrs(t, "s1:26379", "s2:26380")
			if o.MasterName != "primary" || o.DB != 2 || o.Username != "u" || o.Password != "pw" ||
				o.SentinelPassword != "sp" || o.SentinelUsername != "su" {
				t.Fatalf("%+v", o.UniversalOptions)
			}
		}},
		{url: "rediss+sentinel://s1:1/m?tls_server_name=redis.internal", check: func(t *testing.T, o *optsView) {
			if o.TLSConfig == nil || o.TLSConfig.ServerName != "redis.internal" {
				t.Fatalf("TLS %+v", o.TLSConfig)
			}
		}},
		{url: "redis+cluster://127.0.0.1:7000", check: func(t *testing.T, o *optsView) {
			o.addrs(t, "127.0.0.1:7000")
			if !o.IsClusterMode {
				t.Fatal("one seed must still be cluster mode")
			}
		}},
		{url: "redis+cluster://a:1,b:2,c:3?max_retries=5", check: func(t *testing.T, o *optsView) {
			o.addrs(t, "a:1", "b:2", "c:3")
			if !o.IsClusterMode || o.MaxRetries != 5 {
				t.Fatalf("%+v", o.UniversalOptions)
			}
		}},
		{url: "REDIS://h:1", check: func(t *testing.T, o *optsView) { o.addrs(t, "h:1") }},

		{url: "h:6379", err: "missing scheme"},
		{url: "http://h", err: "unsupported scheme"},
		{url: "redis://", err: "no host"},
		{url: "redis://a:1,b:2", err: "exactly one host"},
		{url: "redis://h:0", err: "bad port"},
		{url: "redis://h:99999", err: "bad port"},
		{url: "redis://h:x", err: "bad port"},
		{url: "redis://::1", err: "brackets"},
		{url: "redis://h/abc", err: "database"},
		{url: "redis://h/1/2", err: "path"},
		{url: "redis://h?foo=1", err: "unknown option"},
		{url: "redis://h?dial_timeout=soon", err: "dial_timeout"},
		{url: "redis://h?db=1&db=2", err: "given 2 times"},
		{url: "redis://h#frag", err: "fragment"},
		{url: "redis://h?tls_server_name=x", err: "rediss"},
		{url: "redis://h?sentinel_password=x", err: "only applies"},
		{url: "redis+sentinel://s1:1", err: "master name"},
		{url: "redis+sentinel://s1:1,,s2:2/m", err: "empty host"},
		{url: "redis+cluster://a:1/0", err: "no path"},
		{url: "redis+cluster://a:1?db=1", err: "db 0"},
		{url: "redis://u:%zz@h", err: "password"},
	}
	for _, tc := range tests {
		t.Run(tc.url, func(t *testing.T) {
			o, err := ParseURL(tc.url)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) || !errors.Is(err, ErrBadURL) {
					t.Fatalf("ParseURL(%q) error = %v, want one containing %q wrapping ErrBadURL", tc.url, err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseURL(%q): %v", tc.url, err)
			}
			tc.check(t, &optsView{o})
		})
	}
}

func TestParseURLHidesPassword(t *testing.T) {
	_, err := ParseURL("redis://u:topsecret@h:1?bogus=1")
	if err == nil || strings.Contains(err.Error(), "topsecret") {
		t.Fatalf("error %v must not quote the password", err)
	}
}

func FuzzParseURL(f *testing.F) {
	for _, s := range []string{
		"redis://127.0.0.1:6379/0", "rediss://u:p@h:1?dial_timeout=1s", "redis+sentinel://a:1,b:2/m/1",
		"redis+cluster://a:1,b:2", "redis://[::1]:1", "redis://h?db=1&db=2", "redis+sentinel://:@,/",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		o, err := ParseURL(s)
		if err != nil {
			if !errors.Is(err, ErrBadURL) {
				t.Fatalf("error %v does not wrap ErrBadURL", err)
			}
			return
		}
		if len(o.Addrs) == 0 {
			t.Fatalf("ParseURL(%q) accepted a URL without addresses", s)
		}
	})
}

type optsView struct{ *redis.UniversalOptions }

func (o *optsView) addrs(t *testing.T, want ...string) {
	t.Helper()
	if !slices.Equal(o.Addrs, want) {
		t.Fatalf("addrs %v, want %v", o.Addrs, want)
	}
}
