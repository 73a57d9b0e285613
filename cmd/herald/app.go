package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"sync"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/heraldpush/herald/push"
	"github.com/heraldpush/herald/push/auth"
	"github.com/heraldpush/herald/push/hub"
	"github.com/heraldpush/herald/push/server"
	"github.com/heraldpush/herald/push/store/memstore"
	"github.com/heraldpush/herald/push/store/redisstore"
)

// Version is set at build time (-ldflags "-X main.Version=…").
var Version = "dev"

// Main is the composition root of a Herald node: it wires the store, hub,
// HTTP server and admin listener from a Config, and closes them in order.
// Tests run it on port 0 (see MustRunMain in main_test.go).
type Main struct {
	Config Config
	// LogOutput receives JSON logs; nil means os.Stderr.
	LogOutput io.Writer

	Logger *slog.Logger
	Store  push.Store
	Hub    *hub.Hub
	Server *server.Server

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
	if m.Logger == nil {
		m.Logger = slog.New(slog.NewJSONHandler(out, &slog.HandlerOptions{Level: level}))
	}
	log := m.Logger
	if cfg.NodeName == "" {
		cfg.NodeName, _ = os.Hostname()
	}
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

	m.Hub, err = hub.New(hub.Config{Store: m.Store, Logger: log})
	if err != nil {
		return err
	}
	var authn server.Authenticator
	if cfg.Dev {
		log.Warn("DEV MODE: authentication is disabled; anyone reaching this node may publish and subscribe to every topic")
	} else {
		a, err := auth.New(cfg.Auth)
		if err != nil {
			return fmt.Errorf("auth: %w", err)
		}
		authn = a
	}
	m.Server, err = server.New(server.Config{
		Node: cfg.NodeName, Store: m.Store, Hub: m.Hub, Auth: authn, Dev: cfg.Dev,
		Retention:          cfg.Retention,
		MaxTopicsPerStream: cfg.Limits.MaxTopicsPerStream,
		MaxEventBytes:      cfg.Limits.MaxEventBytes,
		MaxBatchEvents:     cfg.Limits.MaxBatchEvents,
		Heartbeat:          cfg.Stream.Heartbeat,
		RetryMin:           cfg.Stream.RetryMin,
		RetryMax:           cfg.Stream.RetryMax,
		WriteTimeout:       cfg.Stream.WriteTimeout,
		Queue:              hub.Limits{MaxEvents: cfg.Limits.QueueMaxEvents, MaxBytes: cfg.Limits.QueueMaxBytes, MaxLag: cfg.Limits.QueueMaxLag},
		CORS:               cfg.CORS,
		Logger:             log,
	})
	if err != nil {
		return err
	}

	m.publicLn, err = net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen %s: %w", cfg.Listen, err)
	}
	m.public = server.NewHTTPServer(m.Server.Handler(), log)
	if cfg.TLSCertFile != "" {
		cert, err := tls.LoadX509KeyPair(cfg.TLSCertFile, cfg.TLSKeyFile)
		if err != nil {
			return fmt.Errorf("tls: %w", err)
		}
		m.public.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}
		m.scheme = "https"
	}
	m.serve(m.public, m.publicLn, m.scheme == "https")

	if cfg.AdminListen != "" {
		m.adminLn, err = net.Listen("tcp", cfg.AdminListen)
		if err != nil {
			return fmt.Errorf("admin listen %s: %w", cfg.AdminListen, err)
		}
		m.admin = server.NewHTTPServer(m.adminHandler(), log)
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

// adminHandler serves the admin endpoints (never the public API).
func (m *Main) adminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"status":"ok"}`)
	})
	mux.Handle("GET /readyz", m.Server.Handler())
	if m.Config.AdminPprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	return mux
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
		if m.Hub != nil {
			errs = append(errs, m.Hub.Close())
		}
		if m.Store != nil {
			errs = append(errs, m.Store.Close())
		}
		m.closeErr = errors.Join(errs...)
	})
	return m.closeErr
}
