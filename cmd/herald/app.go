package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/hashicorp/memberlist"

	"github.com/heraldpush/herald/cluster"
	"github.com/heraldpush/herald/observability"

	"github.com/heraldpush/herald/push"
	"github.com/heraldpush/herald/push/auth"
	"github.com/heraldpush/herald/push/client/js"
	"github.com/heraldpush/herald/push/hub"
	"github.com/heraldpush/herald/push/node"
	"github.com/heraldpush/herald/push/server"
	"github.com/heraldpush/herald/push/store/memstore"
	"github.com/heraldpush/herald/push/store/redisstore"
	"github.com/heraldpush/herald/resilience"
)

// Version is set at build time (-ldflags "-X main.Version=…").
var Version = "dev"

// Commit is the VCS revision, set at build time (-ldflags "-X
// main.Commit=…") where the Go toolchain cannot stamp it (a container build
// without .git, -buildvcs=false); the toolchain's vcs.revision wins.
var Commit = ""

// Main is the composition root of a Herald node: it wires the store, hub,
// HTTP server and admin listener from a Config, and closes them in order.
// Tests run it on port 0 (see MustRunMain in main_test.go).
type Main struct {
	Config Config
	// LogOutput receives JSON logs; nil means os.Stderr.
	LogOutput io.Writer

	Logger  *slog.Logger
	Store   push.Store
	Hub     *hub.Hub
	Server  *server.Server
	Cluster *cluster.Cluster // nil on a single node
	// Remotes are the read-only stores of the other regions' events.
	Remotes []push.Store
	// Federation is the WAN pool membership; nil outside it.
	Federation *cluster.Federation
	Guards     *resilience.Guards
	Telemetry  *observability.Telemetry
	// GossipTransport, when set, replaces memberlist's UDP/TCP transport
	// (tests use it to cut gossip between in-process nodes).
	GossipTransport memberlist.Transport

	// authn is the authenticator in use (nil in dev mode); Reload swaps it
	// and closes the old one, Close closes it (its JWKS refresher).
	authnMu sync.Mutex
	authn   *auth.Authenticator

	scheme            string // "https" when the public listener serves TLS
	public, admin     *http.Server
	publicLn, adminLn net.Listener
	serveWG           sync.WaitGroup
	closeOnce         sync.Once
	closeErr          error
}

// NewMain returns a Main with the default configuration.
func NewMain() *Main { return &Main{Config: DefaultConfig()} }

// URL is the public base URL (valid after Run).
func (m *Main) URL() string {
	if m.scheme == "" {
		return "http://" + m.publicLn.Addr().String()
	}
	return m.scheme + "://" + m.publicLn.Addr().String()
}

// AdminURL is the admin base URL, or "" when disabled (valid after Run).
func (m *Main) AdminURL() string {
	if m.adminLn == nil {
		return ""
	}
	return "http://" + m.adminLn.Addr().String()
}

// Run builds every component and starts serving. It returns once the
// listeners are bound; Close stops everything.
func (m *Main) Run(ctx context.Context) (err error) {
	defer func() {
		if err != nil {
			_ = m.Close()
		}
	}()
	cfg := m.Config
	out := m.LogOutput
	if out == nil {
		out = os.Stderr
	}
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.LogLevel))
	if cfg.NodeName == "" {
		cfg.NodeName, _ = os.Hostname()
	}
	if m.Logger == nil {
		// JSON logs with trace ids; secrets redacted wherever they appear.
		m.Logger = slog.New(observability.NewLogHandler(slog.NewJSONHandler(out, &slog.HandlerOptions{Level: level})))
	}
	log := m.Logger
	tcfg := cfg.Telemetry
	tcfg.Version, tcfg.Node, tcfg.Region, tcfg.Zone = Version, cfg.NodeName, cfg.Region, cfg.Zone
	tcfg.Logger = log.With("component", "telemetry")
	if m.Telemetry == nil { // tests inject an in-memory one
		if m.Telemetry, err = observability.Setup(ctx, tcfg); err != nil {
			return fmt.Errorf("telemetry: %w", err)
		}
	}
	metrics := m.Telemetry.Metrics()
	gin.SetMode(gin.ReleaseMode)

	if cfg.Redis == "" {
		log.Warn("NOT DURABLE: no Redis configured, events live in this process's memory only and are lost on restart; set --redis for production",
			"store", "memory")
		m.Store = memstore.New(memstore.Config{
			Origin: cfg.Region, Retention: cfg.Retention, IdempotencyWindow: cfg.IdempotencyWindow,
		})
	} else {
		opts, err := redisstore.ParseURL(cfg.Redis)
		if err != nil {
			return err
		}
		st, err := redisstore.New(redisstore.Config{
			Options: opts, Origin: cfg.Region, KeyPrefix: cfg.RedisPrefix,
			Retention: cfg.Retention, IdempotencyWindow: cfg.IdempotencyWindow,
			Logger: log,
		})
		if err != nil {
			return fmt.Errorf("redis store: %w", err)
		}
		m.Store = st
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		if err := st.Ping(pctx); err != nil {
			log.Warn("redis not reachable at start; readiness fails until it is", "err", err)
		}
		cancel()
	}

	m.Guards, err = resilience.New(cfg.Protection, resilience.Options{
		Name: "herald-" + cfg.NodeName, Logger: log.With("component", "protection"), IsFailure: storeFailure,
		OnEvent: func(e resilience.Event) {
			metrics.Protection(context.Background(), e.Layer, e.Resource, e.Reason, e.Kind)
			if e.Layer == resilience.LayerDependency {
				switch e.Kind {
				case resilience.KindTrip:
					metrics.BreakerState(e.Resource, observability.BreakerOpen)
				case resilience.KindHalfOpen:
					metrics.BreakerState(e.Resource, observability.BreakerHalfOpen)
				case resilience.KindRecover:
					metrics.BreakerState(e.Resource, observability.BreakerClosed)
				}
			}
		},
	})
	if err != nil {
		return fmt.Errorf("protection: %w", err)
	}
	store := m.Store
	if m.Store.Durable() {
		store = guardedStore{Store: m.Store, b: m.Guards.Breaker("redis:" + cfg.Region), m: metrics}
		metrics.BreakerState("redis:"+cfg.Region, observability.BreakerClosed)
	}

	remotes, err := m.openRemotes(cfg)
	if err != nil {
		return err
	}
	m.Hub, err = hub.New(hub.Config{Store: store, Remotes: remotes, Logger: log})
	if err != nil {
		return err
	}
	var authn server.Authenticator
	if cfg.Dev {
		log.Warn("DEV MODE: authentication is disabled; anyone reaching this node may publish and subscribe to every topic")
	} else {
		a, err := auth.New(m.authConfig(cfg.Auth))
		if err != nil {
			return fmt.Errorf("auth: %w", err)
		}
		m.authn, authn = a, a
	}
	m.publicLn, err = net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen %s: %w", cfg.Listen, err)
	}
	m.publicLn = server.LimitSendBuffer(m.publicLn, cfg.Stream.SendBuffer)
	if cfg.TLSCertFile != "" {
		m.scheme = "https"
	}
	// The cluster's revocations reach the server, which is built after it
	// (the server needs the cluster view).
	var srv atomic.Pointer[server.Server]
	var view node.Cluster
	if cfg.GossipListen != "" {
		if m.Cluster, err = m.startCluster(cfg, &srv); err != nil {
			return fmt.Errorf("cluster: %w", err)
		}
		view = clusterView{m.Cluster}
	}
	var fed node.Federation
	if cfg.WANListen != "" {
		if m.Federation, err = m.startFederation(cfg); err != nil {
			return fmt.Errorf("federation: %w", err)
		}
		fed = fedView{m.Federation}
	}
	sessions, source, err := sessionBinder(cfg)
	if err != nil {
		return err
	}
	if source == "random" {
		log.Info("sessions are bound with a random key: a client resuming after this node restarts starts a new session (its positions are kept); set session_key to keep them")
	}
	profiles, err := cfg.Ingest.Compile()
	if err != nil {
		return err
	}
	scfg := cfg.Stream.Config
	scfg.Queue = cfg.Limits.Queue()
	m.Server, err = server.New(server.Config{
		Ingest: server.IngestConfig{Profiles: profiles, MaxLines: cfg.Ingest.MaxLines, MaxBodyBytes: cfg.Ingest.MaxBodyBytes},
		Store:  store, Remotes: remotes, Hub: m.Hub, Auth: authn, Dev: cfg.Dev, Sessions: sessions,
		Guard: guardView{m.Guards}, TrustedProxies: cfg.TrustedProxies, Telemetry: m.Telemetry,
		Retention:  cfg.Retention,
		Limits:     cfg.Limits.Limits,
		Stream:     scfg,
		Node:       node.Config{Name: cfg.NodeName, Region: cfg.Region, Balance: cfg.Cluster.Balance, Regions: cfg.Federation.Regions},
		CORS:       cfg.CORS,
		Logger:     log,
		Cluster:    view,
		Federation: fed,
	})
	if err != nil {
		return err
	}
	srv.Store(m.Server)
	metrics.RegisterGauges(m.gauges)

	public := m.Server.Handler()
	if cfg.Dev || cfg.PublicPages {
		if public, err = withPublicPages(public); err != nil {
			return err
		}
	}
	m.public = server.NewHTTPServer(public, log)
	if cfg.TLSCertFile != "" {
		cert, err := tls.LoadX509KeyPair(cfg.TLSCertFile, cfg.TLSKeyFile)
		if err != nil {
			return fmt.Errorf("tls: %w", err)
		}
		m.public.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}
	}
	m.serve(m.public, m.publicLn, m.scheme == "https")

	if cfg.AdminListen != "" {
		m.adminLn, err = net.Listen("tcp", cfg.AdminListen)
		if err != nil {
			return fmt.Errorf("admin listen %s: %w", cfg.AdminListen, err)
		}
		m.admin = server.NewHTTPServer(server.BodyDeadline(m.adminHandler(), cfg.Limits.BodyTimeout), log)
		m.serve(m.admin, m.adminLn, false)
	}
	log.Info("herald node started", "node", cfg.NodeName, "region", cfg.Region, "version", Version,
		"public", m.URL(), "admin", m.AdminURL(), "durable", m.Store.Durable(), "dev", cfg.Dev)
	m.Config = cfg
	return nil
}

func (m *Main) serve(srv *http.Server, ln net.Listener, useTLS bool) {
	m.serveWG.Add(1)
	go func() {
		defer m.serveWG.Done()
		serve := srv.Serve
		if useTLS {
			// ServeTLS with the certificate in TLSConfig; it also enables HTTP/2.
			serve = func(l net.Listener) error { return srv.ServeTLS(l, "", "") }
		}
		if err := serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			m.Logger.Error("http server stopped", "addr", ln.Addr().String(), "err", err)
		}
	}()
}

// adminHandler is the admin listener's router (never the public API).
func (m *Main) adminHandler() *gin.Engine {
	return m.Server.AdminHandler(server.AdminExtras{
		Metrics:    m.Telemetry.MetricsHandler(),
		Protection: http.HandlerFunc(m.handleProtection),
		Pprof:      m.Config.AdminPprof,
		Pages: []server.AdminPage{
			{Path: "/", Handler: statusPage()},
			{Path: js.AssetPrefix, Handler: js.Assets()},
		},
	})
}

// Close stops the node: listeners stop accepting, streams end (clients
// resume elsewhere or on restart), then the hub and the store close.
// It is idempotent.
func (m *Main) Close() error {
	m.closeOnce.Do(func() {
		timeout := m.Config.ShutdownTimeout
		if timeout <= 0 {
			timeout = 30 * time.Second
		}
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		var errs []error
		if m.Cluster != nil {
			// Leave first: peers stop counting this node at once instead of
			// waiting for the failure detector.
			if err := m.Cluster.Leave(2 * time.Second); err != nil {
				m.Logger.Warn("cluster leave", "err", err)
			}
		}
		if m.Server != nil {
			errs = append(errs, m.Server.Close())
		}
		for _, srv := range []*http.Server{m.public, m.admin} {
			if srv != nil {
				if err := srv.Shutdown(ctx); err != nil {
					errs = append(errs, err, srv.Close())
				}
			}
		}
		m.serveWG.Wait()
		m.authnMu.Lock()
		errs = append(errs, m.authn.Close())
		m.authnMu.Unlock()
		if m.Cluster != nil {
			errs = append(errs, m.Cluster.Close())
		}
		if m.Federation != nil {
			if err := m.Federation.Leave(2 * time.Second); err != nil {
				m.Logger.Warn("federation leave", "err", err)
			}
			errs = append(errs, m.Federation.Close())
		}
		if m.Hub != nil {
			errs = append(errs, m.Hub.Close())
		}
		if m.Store != nil {
			errs = append(errs, m.Store.Close())
		}
		for _, st := range m.Remotes {
			errs = append(errs, st.Close())
		}
		if m.Guards != nil {
			errs = append(errs, m.Guards.Close())
		}
		if m.Telemetry != nil {
			// A collector that is down must not turn a clean stop into a
			// failure: the last export is lost, which is logged.
			if err := m.Telemetry.Shutdown(ctx); err != nil {
				m.Logger.Warn("telemetry: final export failed", "err", err)
			}
		}
		m.closeErr = errors.Join(errs...)
	})
	return m.closeErr
}

// startCluster joins the gossip pool. Revocations (a session taken over
// elsewhere, an admin disconnect) are handed to the server once it exists.
func (m *Main) startCluster(cfg Config, srv *atomic.Pointer[server.Server]) (*cluster.Cluster, error) {
	advURL := cfg.AdvertiseURL
	if advURL == "" {
		advURL = m.URL()
	}
	cc, err := clusterConfig(cfg, advURL)
	if err != nil {
		return nil, err
	}
	cc.Transport, cc.Logger = m.GossipTransport, m.Logger
	cc.OnRevoke = func(r cluster.Revocation) {
		if s := srv.Load(); s != nil {
			s.Node().Revoke(r.Session, r.Incarnation, r.Reason)
		}
	}
	cc.OnExpire = func(n int) {
		for range n {
			m.Telemetry.Metrics().OwnershipChange(context.Background(), observability.OwnershipExpire)
		}
	}
	return cluster.New(cc)
}

// clusterConfig is the LAN pool's configuration from cfg; httpURL is the
// URL this node advertises to its peers.
func clusterConfig(cfg Config, httpURL string) (cluster.Config, error) {
	pc, err := poolConfig(cfg, "gossip_listen", cfg.GossipListen, "gossip_advertise", cfg.GossipAdvertise,
		append([]string{cfg.GossipKey}, cfg.GossipOldKeys...))
	if err != nil {
		return cluster.Config{}, err
	}
	pc.Join, pc.RejoinInterval, pc.Label = cfg.Join, cfg.Cluster.RejoinInterval, cfg.Cluster.Label
	return cluster.Config{PoolConfig: pc, Zone: cfg.Zone, HTTPURL: httpURL, Version: Version,
		DeadGrace: cfg.Cluster.DeadGrace}, nil
}

// federationConfig is the WAN pool's configuration from cfg; regionURL is
// the client-facing URL this node advertises to the other regions.
func federationConfig(cfg Config, regionURL string) (cluster.FederationConfig, error) {
	key := cfg.WANKey
	if key == "" {
		key = cfg.GossipKey
	}
	pc, err := poolConfig(cfg, "wan_listen", cfg.WANListen, "wan_advertise", cfg.WANAdvertise, []string{key})
	if err != nil {
		return cluster.FederationConfig{}, err
	}
	pc.NodeName = cfg.NodeName + "." + cfg.Region
	pc.Join, pc.Label = cfg.WANJoin, cfg.Federation.Label
	return cluster.FederationConfig{PoolConfig: pc, RegionURL: regionURL}, nil
}

// poolConfig is what the LAN and WAN pools take alike from their keys: the
// node's name and region, the bind and advertise addresses and the keyring
// (empty keys skipped); the keys are named in errors.
func poolConfig(cfg Config, listenKey, listen, advKey, adv string, keys []string) (cluster.PoolConfig, error) {
	pc := cluster.PoolConfig{NodeName: cfg.NodeName, Region: cfg.Region, Dev: cfg.Dev}
	var err error
	if pc.BindAddr, pc.BindPort, err = splitHostPort(listen); err != nil {
		return pc, fmt.Errorf("%s: %w", listenKey, err)
	}
	if adv != "" {
		if pc.AdvertiseAddr, pc.AdvertisePort, err = splitHostPort(adv); err != nil {
			return pc, fmt.Errorf("%s: %w", advKey, err)
		}
	}
	for _, k := range keys {
		if k == "" {
			continue
		}
		b, err := cluster.ParseKey(k)
		if err != nil {
			return pc, err
		}
		pc.Keys = append(pc.Keys, b)
	}
	return pc, nil
}

// openRemotes opens the read-only store of every remote region, each behind
// its own breaker ("redis:<region>").
func (m *Main) openRemotes(cfg Config) ([]push.Store, error) {
	rs, err := cfg.Remotes()
	if err != nil {
		return nil, err
	}
	for _, r := range rs {
		opts, err := redisstore.ParseURL(r.URL)
		if err != nil {
			return nil, err
		}
		st, err := redisstore.New(redisstore.Config{
			Options: opts, Origin: r.Name, KeyPrefix: cfg.RedisPrefix, ReadOnly: true,
			Retention: cfg.Retention, IdempotencyWindow: cfg.IdempotencyWindow, Logger: m.Logger,
		})
		if err != nil {
			return nil, fmt.Errorf("remote redis %s: %w", r.Name, err)
		}
		m.Remotes = append(m.Remotes, st)
	}
	out := make([]push.Store, len(m.Remotes))
	for i, st := range m.Remotes {
		target := "redis:" + st.Origin()
		out[i] = guardedStore{Store: st, b: m.Guards.Breaker(target), m: m.Telemetry.Metrics()}
		m.Telemetry.Metrics().BreakerState(target, observability.BreakerClosed)
	}
	return out, nil
}

// startFederation joins the WAN pool that federates regions.
func (m *Main) startFederation(cfg Config) (*cluster.Federation, error) {
	regionURL := cfg.RegionURL
	if regionURL == "" {
		regionURL = cfg.AdvertiseURL
	}
	if regionURL == "" {
		regionURL = m.URL()
	}
	fc, err := federationConfig(cfg, regionURL)
	if err != nil {
		return nil, err
	}
	fc.Logger = m.Logger
	return cluster.NewFederation(fc)
}

func splitHostPort(hp string) (string, int, error) {
	h, p, err := net.SplitHostPort(hp)
	if err != nil {
		return "", 0, err
	}
	port, err := strconv.ParseUint(p, 10, 16)
	if err != nil {
		return "", 0, fmt.Errorf("port %q: %w", p, err)
	}
	return h, int(port), nil
}

// Drain is the lame-duck stop (SIGTERM): the node reports draining to its
// peers and to readiness probes, stops accepting connections, and closes
// its streams spread over the drain window with a final retry: so clients
// resume on other nodes at a steady rate; publishes in flight complete.
// Close must still be called.
func (m *Main) Drain(ctx context.Context) error {
	if m.Server == nil {
		return nil
	}
	if m.Cluster != nil {
		m.Cluster.SetDraining()
	}
	if m.Federation != nil {
		m.Federation.SetState(cluster.StateDraining)
	}
	// Stop accepting; Shutdown returns once every request, streams
	// included, has finished.
	shut := make(chan error, 1)
	go func() { shut <- m.public.Shutdown(ctx) }()
	err := m.Server.Node().Drain(ctx, m.Config.Cluster.DrainWindow)
	return errors.Join(err, <-shut)
}

// Reload applies the reloadable part of cfg without a restart (SIGHUP):
// protection rules, authentication keys and ingest profiles. Everything else needs a
// restart and is left as it is.
func (m *Main) Reload(cfg Config) error {
	if err := m.Guards.Reload(cfg.Protection); err != nil {
		return fmt.Errorf("protection: %w", err)
	}
	profiles, err := cfg.Ingest.Compile()
	if err != nil {
		return fmt.Errorf("ingest: %w", err)
	}
	if !m.Config.Dev {
		a, err := auth.New(m.authConfig(cfg.Auth))
		if err != nil {
			return fmt.Errorf("auth: %w", err)
		}
		m.Server.SetAuth(a)
		m.authnMu.Lock()
		old := m.authn
		m.authn = a
		m.authnMu.Unlock()
		// Requests in flight keep their keys; only the old refresher stops.
		_ = old.Close()
	}
	m.Server.SetIngestProfiles(profiles)
	m.Config.Protection, m.Config.Auth, m.Config.Ingest.Profiles = cfg.Protection, cfg.Auth, cfg.Ingest.Profiles
	m.Logger.Info("configuration reloaded", "protection", true, "auth_keys", len(cfg.Auth.Keys), "api_keys", len(cfg.Auth.APIKeys))
	return nil
}

// authConfig adds the runtime dependencies (logger, JWKS metrics) to the
// loaded auth configuration.
func (m *Main) authConfig(c auth.Config) auth.Config {
	c.Logger = m.Logger.With("component", "auth")
	c.JWKSObserver = m.Telemetry.Metrics()
	return c
}

// handleProtection reports the protection layers (admin listener only):
// every block/trip/recovery counter and the breaker state.
func (m *Main) handleProtection(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	body := map[string]any{
		"counters": m.Guards.Counters(),
		"streams":  m.Guards.Streams(),
		"breakers": map[string]string{"redis:" + m.Config.Region: m.Guards.Breaker("redis:" + m.Config.Region).State()},
	}
	_ = json.NewEncoder(w).Encode(body)
}

// gauges is the snapshot behind the observable gauges (read at scrape).
func (m *Main) gauges() observability.GaugeSnapshot {
	g := observability.GaugeSnapshot{QueueDepth: int64(m.Server.Node().QueueDepth())}
	if m.Cluster != nil {
		g.GossipMembers = m.Cluster.Stats().Members
		g.GossipHealthScore = m.Cluster.HealthScore()
	}
	if len(m.Remotes) > 0 {
		g.ReplicationLag = m.Server.Node().ReplicationLag()
	}
	return g
}
