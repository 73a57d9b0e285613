package redisstore

import (
	"crypto/tls"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

const (
	defaultRedisPort    = "6379"
	defaultSentinelPort = "26379"
)

// ParseURL turns a Redis URL into go-redis universal options:
//
//	redis://[user:pass@]host[:port][/db][?opts]            single node
//	rediss://…                                              single node over TLS
//	redis+sentinel://[user:pass@]h1[:p1],h2[:p2]/master[/db][?opts]
//	rediss+sentinel://…                                     Sentinel, TLS to the data nodes
//	redis+cluster://[user:pass@]h1[:p1],h2[:p2][?opts]      Redis Cluster (one seed is enough)
//	rediss+cluster://…                                      Redis Cluster over TLS
//
// Ports default to 6379 (26379 for Sentinels). User and password
// authenticate to the data nodes; Sentinels use the sentinel_username and
// sentinel_password options. Options: db, client_name, protocol (2 or 3),
// dial_timeout, read_timeout, write_timeout (Go durations, or a number of
// seconds), pool_size, max_retries, sentinel_username, sentinel_password,
// tls_server_name. Unknown options are errors, so a typo cannot silently
// fall back to a default.
//
// The options enable ContextTimeoutEnabled, so the per-call deadlines of the
// store bound every network wait. Errors wrap ErrBadURL and never quote the
// password.
//
// go-redis's ParseURL, ParseClusterURL and ParseFailoverURL are not used:
// they take extra hosts as ?addr= and the Sentinel master as ?master_name=
// (with the data nodes' password in the query), so none reads this
// grammar; url.Parse's errors quote the whole URL, password included; and
// they keep the last of repeated options and refuse "0.5" seconds, which
// this documented grammar rejects and accepts respectively.
func ParseURL(s string) (*redis.UniversalOptions, error) {
	scheme, rest, ok := strings.Cut(s, "://")
	if !ok {
		return nil, fmt.Errorf("%w: missing scheme (want redis://, rediss://, redis+sentinel:// or redis+cluster://)", ErrBadURL)
	}
	var useTLS bool
	var mode string
	switch strings.ToLower(scheme) {
	case "redis":
		mode = "single"
	case "rediss":
		mode, useTLS = "single", true
	case "redis+sentinel":
		mode = "sentinel"
	case "rediss+sentinel":
		mode, useTLS = "sentinel", true
	case "redis+cluster":
		mode = "cluster"
	case "rediss+cluster":
		mode, useTLS = "cluster", true
	default:
		return nil, fmt.Errorf("%w: unsupported scheme %q", ErrBadURL, scheme)
	}
	if i := strings.IndexByte(rest, '#'); i >= 0 {
		return nil, fmt.Errorf("%w: fragments are not allowed", ErrBadURL)
	}
	rest, rawQuery, _ := strings.Cut(rest, "?")
	authority, path, _ := strings.Cut(rest, "/")

	opts := &redis.UniversalOptions{ContextTimeoutEnabled: true}
	if i := strings.LastIndexByte(authority, '@'); i >= 0 {
		user, pass, err := parseUserInfo(authority[:i])
		if err != nil {
			return nil, err
		}
		opts.Username, opts.Password = user, pass
		authority = authority[i+1:]
	}
	defPort := defaultRedisPort
	if mode == "sentinel" {
		defPort = defaultSentinelPort
	}
	addrs, err := parseHosts(authority, defPort)
	if err != nil {
		return nil, err
	}
	if mode == "single" && len(addrs) != 1 {
		return nil, fmt.Errorf("%w: %s:// takes exactly one host; use redis+cluster:// or redis+sentinel:// for several", ErrBadURL, scheme)
	}
	opts.Addrs = addrs

	segs := splitPath(path)
	switch mode {
	case "single":
		if len(segs) > 1 {
			return nil, fmt.Errorf("%w: path must be /<db>", ErrBadURL)
		}
		if len(segs) == 1 {
			if opts.DB, err = parseDB(segs[0]); err != nil {
				return nil, err
			}
		}
	case "sentinel":
		if len(segs) < 1 || len(segs) > 2 {
			return nil, fmt.Errorf("%w: redis+sentinel:// needs the master name as path: /<master>[/<db>]", ErrBadURL)
		}
		opts.MasterName = segs[0]
		if len(segs) == 2 {
			if opts.DB, err = parseDB(segs[1]); err != nil {
				return nil, err
			}
		}
	case "cluster":
		if len(segs) > 0 {
			return nil, fmt.Errorf("%w: redis+cluster:// takes no path (Redis Cluster has only db 0)", ErrBadURL)
		}
		opts.IsClusterMode = true // even with a single seed address
	}

	tlsServerName := ""
	if rawQuery != "" {
		q, err := url.ParseQuery(rawQuery)
		if err != nil {
			return nil, fmt.Errorf("%w: query: %v", ErrBadURL, err)
		}
		for name, vals := range q {
			if len(vals) != 1 {
				return nil, fmt.Errorf("%w: option %q given %d times", ErrBadURL, name, len(vals))
			}
			if err := applyOption(opts, mode, name, vals[0], &tlsServerName); err != nil {
				return nil, err
			}
		}
	}
	if useTLS {
		if tlsServerName == "" && len(addrs) == 1 {
			tlsServerName, _, _ = net.SplitHostPort(addrs[0])
		}
		opts.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12, ServerName: tlsServerName}
	} else if tlsServerName != "" {
		return nil, fmt.Errorf("%w: tls_server_name needs a rediss scheme", ErrBadURL)
	}
	return opts, nil
}

func parseUserInfo(raw string) (user, pass string, err error) {
	u, p, hasPass := strings.Cut(raw, ":")
	if user, err = url.PathUnescape(u); err != nil {
		return "", "", fmt.Errorf("%w: bad escape in user name", ErrBadURL)
	}
	if hasPass {
		if pass, err = url.PathUnescape(p); err != nil {
			// Do not echo the password.
			return "", "", fmt.Errorf("%w: bad escape in password", ErrBadURL)
		}
	}
	return user, pass, nil
}

func parseHosts(authority, defPort string) ([]string, error) {
	if authority == "" {
		return nil, fmt.Errorf("%w: no host", ErrBadURL)
	}
	var addrs []string
	for _, h := range strings.Split(authority, ",") {
		if h == "" {
			return nil, fmt.Errorf("%w: empty host in %q", ErrBadURL, authority)
		}
		host, port := h, defPort
		switch {
		case strings.HasPrefix(h, "["): // [ipv6]:port or [ipv6]
			end := strings.IndexByte(h, ']')
			if end < 0 {
				return nil, fmt.Errorf("%w: unterminated IPv6 address %q", ErrBadURL, h)
			}
			host = h[1:end]
			if tail := h[end+1:]; tail != "" {
				p, ok := strings.CutPrefix(tail, ":")
				if !ok {
					return nil, fmt.Errorf("%w: bad host %q", ErrBadURL, h)
				}
				port = p
			}
		case strings.Count(h, ":") == 1:
			host, port, _ = strings.Cut(h, ":")
		case strings.Count(h, ":") > 1:
			return nil, fmt.Errorf("%w: IPv6 address %q must be in brackets", ErrBadURL, h)
		}
		if host == "" {
			return nil, fmt.Errorf("%w: empty host name in %q", ErrBadURL, h)
		}
		n, err := strconv.Atoi(port)
		if err != nil || n < 1 || n > 65535 {
			return nil, fmt.Errorf("%w: bad port in %q", ErrBadURL, h)
		}
		addrs = append(addrs, net.JoinHostPort(host, port))
	}
	return addrs, nil
}

func splitPath(p string) []string {
	p = strings.Trim(p, "/")
	if p == "" {
		return nil
	}
	return strings.Split(p, "/")
}

func parseDB(s string) (int, error) {
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("%w: bad database number %q", ErrBadURL, s)
	}
	return n, nil
}

func applyOption(o *redis.UniversalOptions, mode, name, val string, tlsServerName *string) error {
	bad := func() error { return fmt.Errorf("%w: bad value for option %s", ErrBadURL, name) }
	var err error
	switch name {
	case "db":
		if mode == "cluster" {
			return fmt.Errorf("%w: Redis Cluster has only db 0", ErrBadURL)
		}
		if o.DB, err = parseDB(val); err != nil {
			return err
		}
	case "client_name":
		o.ClientName = val
	case "protocol":
		if val != "2" && val != "3" {
			return bad()
		}
		o.Protocol, _ = strconv.Atoi(val)
	case "dial_timeout":
		o.DialTimeout, err = parseDuration(val)
	case "read_timeout":
		o.ReadTimeout, err = parseDuration(val)
	case "write_timeout":
		o.WriteTimeout, err = parseDuration(val)
	case "pool_size":
		o.PoolSize, err = strconv.Atoi(val)
		if err == nil && o.PoolSize < 1 {
			return bad()
		}
	case "max_retries":
		o.MaxRetries, err = strconv.Atoi(val)
	case "sentinel_username", "sentinel_password":
		if mode != "sentinel" {
			return fmt.Errorf("%w: option %s only applies to redis+sentinel://", ErrBadURL, name)
		}
		if name == "sentinel_username" {
			o.SentinelUsername = val
		} else {
			o.SentinelPassword = val
		}
	case "tls_server_name":
		*tlsServerName = val
	default:
		return fmt.Errorf("%w: unknown option %q", ErrBadURL, name)
	}
	if err != nil {
		return bad()
	}
	return nil
}

// parseDuration accepts Go durations ("500ms") and plain seconds ("3", "0.5").
func parseDuration(s string) (time.Duration, error) {
	if d, err := time.ParseDuration(s); err == nil {
		return d, nil
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || f < 0 {
		return 0, fmt.Errorf("bad duration %q", s)
	}
	return time.Duration(f * float64(time.Second)), nil
}
