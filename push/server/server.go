package server

import (
	"github.com/heraldpush/herald/internal/defaults"

	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gin-contrib/cors"
	"github.com/gin-gonic/gin"

	"github.com/heraldpush/herald/observability"
	"github.com/heraldpush/herald/push"
	"github.com/heraldpush/herald/push/auth"
	"github.com/heraldpush/herald/push/hub"
	"github.com/heraldpush/herald/push/node"
	"github.com/heraldpush/herald/push/stream"
)

// Authenticator resolves a request's credentials to a principal. push/auth
// implements it; the server holds it behind an atomic pointer so keys can be
// rotated without a restart.
type Authenticator interface {
	Authenticate(r *http.Request, allowCookie bool) (*auth.Principal, error)
}

// Config configures a Server. Zero values mean the documented defaults
// (DefaultConfig, stream.DefaultConfig, node.DefaultConfig).
type Config struct {
	// Store holds the local origin's events: publishes append to it.
	Store push.Store
	// Remotes are the read-only stores of the other origin regions (the
	// local replica of each remote region's primary). Streams carry a
	// position per topic per origin and read each origin from its store.
	Remotes []push.Store
	// Hub fans live events out; it must be fed by Store and every Remote.
	Hub *hub.Hub
	// Auth authenticates requests; required unless Dev.
	Auth Authenticator
	// Dev disables authentication: every request may publish and subscribe
	// to every topic. Never enable it in production.
	Dev bool
	// Retention is reported by GET /v1/topics/{topic}.
	Retention push.RetentionPolicy
	// Limits bound requests.
	Limits Limits
	// Stream tunes streams (heartbeat, retry, write deadline, coalescing,
	// live queue bounds).
	Stream stream.Config
	// Node names the node and tunes admission, balancing and regions.
	Node node.Config
	// CORS configures cross-origin access; empty AllowedOrigins disables CORS.
	CORS CORSConfig
	// Logger; nil means slog.Default().
	Logger *slog.Logger
	// Cluster is the membership and session-ownership view; nil runs a
	// single node (sessions are then tracked on this node only).
	Cluster node.Cluster
	// Federation is the view of the other regions (alternate endpoints,
	// their replication progress); nil runs a single region.
	Federation node.Federation
	// Guard is the protection layers; nil means unguarded.
	Guard Guard
	// Telemetry records traces and metrics; nil records nothing.
	Telemetry *observability.Telemetry
	// Sessions binds session ids to principals (ADR 0014). Every node that
	// may see a session's reconnect needs the same keys; nil means a random
	// key, recognised by this Server only.
	Sessions *push.SessionBinder
	// Ingest configures NDJSON ingest for log shippers (POST /v1/ingest).
	Ingest IngestConfig
	// TrustedProxies are the proxy addresses (CIDRs or IPs) whose
	// X-Forwarded-For is believed for the client IP (per-IP stream caps);
	// empty means the peer address is the client.
	TrustedProxies []string
}

// Limits bound what one request may ask for.
type Limits struct {
	// MaxEventBytes caps one event's data (1..1048576 bytes).
	MaxEventBytes int `koanf:"max_event_bytes"`
	// MaxTopicsPerStream caps the topics of one stream (1..256).
	MaxTopicsPerStream int `koanf:"max_topics_per_stream"`
	// MaxBatchEvents caps the events of one POST /v1/events (1..10000).
	MaxBatchEvents int `koanf:"max_batch_events"`
	// BodyTimeout bounds the time a non-stream request (publish, history,
	// topic info, presence, admin) may take to send its body, from the end
	// of its headers (408 and a closed connection after it); its answer
	// must be taken within body_timeout + stream.write_timeout. Streams
	// are not bounded by it.
	BodyTimeout time.Duration `koanf:"body_timeout"`
}

// DefaultLimits returns the documented defaults.
func DefaultLimits() Limits {
	return Limits{MaxEventBytes: 64 << 10, MaxTopicsPerStream: 32, MaxBatchEvents: 100, BodyTimeout: 15 * time.Second}
}

// withDefaults returns l with its zero fields set from DefaultLimits.
func (l Limits) withDefaults() Limits {
	d := DefaultLimits()
	defaults.Positive(&l.MaxEventBytes, d.MaxEventBytes)
	defaults.Positive(&l.MaxTopicsPerStream, d.MaxTopicsPerStream)
	defaults.Positive(&l.MaxBatchEvents, d.MaxBatchEvents)
	defaults.Positive(&l.BodyTimeout, d.BodyTimeout)
	return l
}

// CORSConfig is the cross-origin allow-list.
type CORSConfig struct {
	// AllowedOrigins are exact origins ("https://app.example.com"), or "*"
	// (only without credentials).
	AllowedOrigins []string `koanf:"allowed_origins"`
	// AllowCredentials lets browsers send cookies (EventSource withCredentials).
	AllowCredentials bool `koanf:"allow_credentials"`
	// MaxAge of preflight results; zero means 10m.
	MaxAge time.Duration `koanf:"max_age"`
}

// Validate reports an unsafe or malformed CORS configuration.
func (c CORSConfig) Validate() error {
	for _, o := range c.AllowedOrigins {
		if o == "*" && c.AllowCredentials {
			return errors.New("cors: allow_credentials needs exact origins, not \"*\"")
		}
		if o == "" {
			return errors.New("cors: empty origin in allowed_origins")
		}
	}
	return nil
}

// Server serves Herald's public API: the HTTP edge of a node.
type Server struct {
	cfg    Config
	log    *slog.Logger
	node   *node.Node
	store  push.Store
	engine *gin.Engine
	// bufs are the SSE writers' buffers, borrowed while a stream writes.
	bufs sync.Pool
	auth atomic.Pointer[authHolder]
	// ingest holds the reloadable ingest profiles.
	ingest ingestState
	// sockets counts WebSocket handlers: their connections are hijacked,
	// so http.Server.Shutdown does not wait for them; Close does.
	sockets    sync.WaitGroup
	socketsMu  sync.Mutex
	socketsEnd bool
}

// New builds a Server and its node; Close stops them.
func New(cfg Config) (*Server, error) {
	if cfg.Store == nil || cfg.Hub == nil {
		return nil, errors.New("server: Store and Hub are required")
	}
	if cfg.Auth == nil && !cfg.Dev {
		return nil, errors.New("server: Auth is required unless Dev")
	}
	if err := cfg.CORS.Validate(); err != nil {
		return nil, err
	}
	cfg.Limits = cfg.Limits.withDefaults()
	cfg.Stream = cfg.Stream.WithDefaults()
	cfg.Node = cfg.Node.WithDefaults()
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	var guard node.Guard
	if cfg.Guard != nil {
		guard = cfg.Guard
	}
	n, err := node.New(cfg.Node, cfg.Stream, node.Deps{
		Store: cfg.Store, Remotes: cfg.Remotes, Hub: cfg.Hub, Cluster: cfg.Cluster, Federation: cfg.Federation,
		Guard: guard, Sessions: cfg.Sessions, Telemetry: cfg.Telemetry, Logger: cfg.Logger,
	})
	if err != nil {
		return nil, fmt.Errorf("server: %w", err)
	}
	s := &Server{
		cfg:   cfg,
		log:   cfg.Logger.With("component", "http"),
		node:  n,
		store: cfg.Store,
	}
	s.auth.Store(&authHolder{cfg.Auth})
	s.bufs.New = func() any { b := make([]byte, 0, 4096); return &b }
	s.engine = s.routes()
	return s, nil
}

// Handler returns the public HTTP handler.
func (s *Server) Handler() http.Handler { return streamStacks{s.engine} }

// Routes lists the public router's routes (the OpenAPI coverage test);
// Handler wraps the router, so it is not a *gin.Engine.
func (s *Server) Routes() gin.RoutesInfo { return s.engine.Routes() }

// streamStacks is the public handler: a GET of the stream route grows its
// goroutine's stack before routing (stream.GrowStackEarly), where the copy
// is cheap; every other request goes to the router as it came.
type streamStacks struct{ next http.Handler }

func (h streamStacks) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodGet && r.URL.Path == streamPath {
		stream.GrowStackEarly(0)
	}
	h.next.ServeHTTP(w, r)
}

// Node is the node behind the server: its streams, drain, regions.
func (s *Server) Node() *node.Node { return s.node }

// Stats returns the stream counters.
func (s *Server) Stats() node.Stats { return s.node.Stats() }

// Close ends every open stream (clients reconnect and resume), stops the
// node's loops and waits for the WebSocket handlers to finish. It does not
// close Store or Hub, which the caller owns.
func (s *Server) Close() error {
	s.socketsMu.Lock()
	s.socketsEnd = true
	s.socketsMu.Unlock()
	err := s.node.Close()
	s.sockets.Wait()
	return err
}

// holdSocket counts a WebSocket handler in, unless the server is closing.
func (s *Server) holdSocket() bool {
	s.socketsMu.Lock()
	defer s.socketsMu.Unlock()
	if s.socketsEnd {
		return false
	}
	s.sockets.Add(1)
	return true
}

// NewHTTPServer returns an http.Server with Herald's hardening: header read
// timeout and size cap, idle timeout, and no server-wide WriteTimeout (it
// would kill long-lived streams; streams use per-write deadlines instead).
func NewHTTPServer(h http.Handler, log *slog.Logger) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    32 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
}

func (s *Server) routes() *gin.Engine {
	e := gin.New()
	e.HandleMethodNotAllowed = true
	if err := e.SetTrustedProxies(s.cfg.TrustedProxies); err != nil {
		s.log.Error("trusted_proxies ignored", "err", err)
		_ = e.SetTrustedProxies(nil)
	}
	e.Use(s.recover, s.bound)
	if len(s.cfg.CORS.AllowedOrigins) > 0 {
		cc := cors.Config{
			AllowOrigins:     s.cfg.CORS.AllowedOrigins,
			AllowMethods:     []string{http.MethodGet, http.MethodPost},
			AllowHeaders:     []string{"Authorization", "Content-Type", "Last-Event-ID", "Idempotency-Key", "X-API-Key", "Traceparent", "Herald-Client"},
			ExposeHeaders:    []string{"Retry-After"},
			AllowCredentials: s.cfg.CORS.AllowCredentials,
			MaxAge:           s.cfg.CORS.MaxAge,
		}
		if cc.MaxAge == 0 {
			cc.MaxAge = 10 * time.Minute
		}
		e.Use(cors.New(cc))
	}
	e.NoRoute(func(c *gin.Context) { s.writeError(c, errf(http.StatusNotFound, CodeNotFound, "no such endpoint")) })
	e.NoMethod(func(c *gin.Context) {
		s.writeError(c, errf(http.StatusMethodNotAllowed, CodeMethod, "method not allowed"))
	})
	e.GET("/healthz", func(c *gin.Context) { c.JSON(http.StatusOK, gin.H{"status": "ok"}) })
	e.GET("/readyz", s.handleReady)
	v1 := e.Group("/v1")
	v1.POST("/topics/:topic/events", s.handlePublish)
	v1.GET("/topics/:topic/events", s.handleHistory)
	v1.GET("/topics/:topic", s.handleTopic)
	v1.POST("/events", s.handleBatch)
	s.ingestRoutes(v1)
	v1.GET("/stream", s.handleStream)
	v1.GET("/ws", s.handleWS)
	v1.GET("/topics/:topic/presence", s.handlePresence)
	v1.GET("/cluster/members", s.requireAdmin, s.handleMembers)
	v1.GET("/sessions/:id", s.requireAdmin, s.handleSession)
	v1.DELETE("/sessions/:id", s.requireAdmin, s.handleDisconnect)
	return e
}

// streamPath is the one route whose requests are long-lived.
const streamPath = "/v1/stream"

// bound holds every non-stream request to the limits a caller cannot be
// trusted to keep: at most Guard's requests in flight per client IP, and
// BodyTimeout to send its body (then BodyTimeout + WriteTimeout to take the
// answer). A slow body is cut off with 408 and a closed connection, an
// address over its cap gets 429 and a closed connection. Streams are
// admitted and bounded by their own handler (per-write deadlines); they
// only drop a write deadline an earlier request on the same connection set.
func (s *Server) bound(c *gin.Context) {
	rc := http.NewResponseController(c.Writer)
	if p := c.Request.URL.Path; p == streamPath || p == wsPath {
		_ = rc.SetWriteDeadline(time.Time{})
		c.Next()
		return
	}
	now := time.Now()
	_ = rc.SetReadDeadline(now.Add(s.cfg.Limits.BodyTimeout))
	_ = rc.SetWriteDeadline(now.Add(s.cfg.Limits.BodyTimeout + s.cfg.Stream.WriteTimeout))
	if g := s.cfg.Guard; g != nil {
		done, err := g.Request(c.ClientIP())
		if err != nil {
			s.writeError(c, &apiError{Status: http.StatusTooManyRequests, Code: CodeRateLimited,
				Message:    "too many requests in flight from this address; retry after the Retry-After delay",
				RetryAfter: retryAfterOf(err), Close: true})
			return
		}
		defer done()
	}
	c.Next()
}

// BodyDeadline bounds the time a request with a body may take to send it
// (d from the start of h), for listeners without streams, such as the
// admin listener. Requests without a body are not bounded by it, so a long
// pprof profile is not cut short.
func BodyDeadline(h http.Handler, d time.Duration) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength != 0 {
			_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(d))
		}
		h.ServeHTTP(w, r)
	})
}

// recover turns a handler panic into a 500 JSON error (the connection
// survives, the node keeps serving); the panic is logged as a defect.
func (s *Server) recover(c *gin.Context) {
	defer func() {
		if v := recover(); v != nil {
			if v == http.ErrAbortHandler {
				panic(v)
			}
			attrs := []any{"path", c.FullPath(), "panic", fmt.Sprint(v)}
			if fp, ok := v.(*stream.FreshStackPanic); ok {
				attrs = append(attrs, "stack", string(fp.Stack()))
			}
			s.log.Error("handler panic", attrs...)
			if !c.Writer.Written() {
				s.writeError(c, fmt.Errorf("panic: %v", v))
			}
		}
	}()
	c.Next()
}

func (s *Server) handleReady(c *gin.Context) {
	ctx, cancel := context.WithTimeout(c.Request.Context(), 2*time.Second)
	defer cancel()
	if err := s.store.Ping(ctx); err != nil {
		s.writeError(c, fmt.Errorf("%w: %v", push.ErrUnavailable, err))
		return
	}
	if s.node.Closed() {
		s.writeError(c, push.ErrClosed)
		return
	}
	if s.node.Draining() {
		s.writeError(c, errf(http.StatusServiceUnavailable, CodeDraining, "node is draining"))
		return
	}
	if s.node.Evacuating() {
		s.writeError(c, &apiError{Status: http.StatusServiceUnavailable, Code: CodeEvacuating,
			Message: "region is being evacuated", Alternates: s.node.Alternates()})
		return
	}
	c.JSON(http.StatusOK, gin.H{"status": "ready", "durable": s.store.Durable()})
}

type authHolder struct{ a Authenticator }

// SetAuth replaces the authenticator (key rotation on SIGHUP). Requests in
// flight finish with the one they started with.
func (s *Server) SetAuth(a Authenticator) {
	if a != nil {
		s.auth.Store(&authHolder{a})
	}
}

// principal authenticates the request (or grants everything in dev mode).
func (s *Server) principal(r *http.Request, allowCookie bool) (*auth.Principal, error) {
	if s.cfg.Dev {
		return auth.DevPrincipal(), nil
	}
	return s.auth.Load().a.Authenticate(r, allowCookie)
}
