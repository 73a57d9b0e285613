package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gin-contrib/cors"
	"github.com/gin-gonic/gin"

	"github.com/heraldpush/herald/observability"
	"github.com/heraldpush/herald/push"
	"github.com/heraldpush/herald/push/auth"
	"github.com/heraldpush/herald/push/hub"
)

// Authenticator resolves a request's credentials to a principal. push/auth
// implements it; the server holds it behind an atomic pointer so keys can be
// rotated without a restart.
type Authenticator interface {
	Authenticate(r *http.Request, allowCookie bool) (*auth.Principal, error)
}

// Config configures a Server. Zero values mean the documented defaults.
type Config struct {
	// Node is this node's name, reported in herald.hello.
	Node string
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

	// MaxTopicsPerStream caps topics on one stream; zero means 32.
	MaxTopicsPerStream int
	// MaxEventBytes caps one event's data; zero means 64 KiB.
	MaxEventBytes int
	// MaxBatchEvents caps POST /v1/events; zero means 100.
	MaxBatchEvents int
	// Heartbeat is the interval of keep-alive comments; zero means 15s.
	Heartbeat time.Duration
	// RetryMin and RetryMax bound the jittered reconnection delay sent as
	// `retry:` at connect; zero means 1s and 5s.
	RetryMin, RetryMax time.Duration
	// CoalesceWindow turns on write coalescing under load: while the node
	// is overloaded (its streams' queues grow across writes, ADR 0020) and
	// a stream's write went out late (its oldest event waited in the queue
	// more than CoalesceLate) with only a few events in it, events arriving
	// within CoalesceWindow of that write wait and go out together in one
	// write. It trades at most that much latency, on busy streams of a node
	// short of CPU, for fewer syscalls and client wake-ups. 0 (the default)
	// writes every event at once.
	CoalesceWindow time.Duration
	// CoalesceLate is the queue wait that counts as late; 0 means 20ms, a
	// negative value counts every write as late on a node taken as
	// overloaded (tests).
	CoalesceLate time.Duration
	// BodyTimeout bounds how long a non-stream request (publish, history,
	// topic info, presence, admin) may take to send its body, from the end
	// of its headers; a body still arriving then gets 408 and the
	// connection is closed. The answer must be taken within BodyTimeout +
	// WriteTimeout. Streams are not bounded by it. Zero means 15s.
	BodyTimeout time.Duration
	// WriteTimeout bounds each write to a stream; a client that cannot take
	// a write in time is cut off. Zero means 10s.
	WriteTimeout time.Duration
	// ReplayPage is the number of events read per history page; zero means 500.
	ReplayPage int
	// Queue bounds each stream's live queue (see hub.Limits).
	Queue hub.Limits
	// CORS configures cross-origin access; empty AllowedOrigins disables CORS.
	CORS CORSConfig
	// Logger; nil means slog.Default().
	Logger *slog.Logger

	// Cluster is the membership and session-ownership view; nil runs a
	// single node (sessions are then tracked on this node only).
	Cluster Cluster
	// Region is this node's region, reported in session records.
	Region string
	// Target is this node's connection target: above it, new streams go to
	// a less loaded peer (Redirect) or are shed. Zero means no target.
	Target int
	// Redirect lets the node answer a new stream with 307 to a less loaded
	// peer's advertised URL when it is over Target or draining. Enable it
	// only when clients can reach every node's advertised URL.
	Redirect bool
	// RebalanceWindow is the window over which a node above the region's
	// average sheds its excess streams after a node joins; zero disables
	// rebalancing.
	RebalanceWindow time.Duration
	// LoadInterval is how often the node publishes its load to the cluster
	// and checks for joins; zero means 1s.
	LoadInterval time.Duration
	// ReplicaWait bounds how long a resume waits for a remote origin's
	// replica to reach the client's cursor before answering with an
	// explicit replica_behind reset; zero means 2s.
	ReplicaWait time.Duration
	// Federation is the view of the other regions (alternate endpoints,
	// their replication progress); nil runs a single region.
	Federation Federation
	// RegionInterval is the period of the region loop: heartbeat written
	// to the local store, replication lag of every remote origin measured,
	// evacuation orders read. Zero means 1s.
	RegionInterval time.Duration
	// EvacuationWindow spreads the closing of streams when the region is
	// evacuated; zero means 30s. EvacuationCatchUp bounds the wait for the
	// other regions' replicas to reach this origin's head first; zero
	// means 60s.
	EvacuationWindow, EvacuationCatchUp time.Duration
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

// Server serves Herald's public API.
type Server struct {
	cfg     Config
	log     *slog.Logger
	store   push.Store
	stores  map[string]push.Store // by origin, the local one included
	hub     *hub.Hub
	origins []string
	engine  *gin.Engine
	bufs    sync.Pool

	closing chan struct{}
	// closed is done when closing is closed (streams watch it with
	// context.AfterFunc instead of a select case).
	closed     context.Context
	markClosed context.CancelFunc
	once       sync.Once
	wg         sync.WaitGroup

	table    *streamTable
	draining atomic.Bool
	// evacuating is set while the region's evacuation order is applied;
	// publishing counts publishes in flight (evacuation waits for them).
	evacuating atomic.Bool
	publishing atomic.Int64
	region     regionState
	auth       atomic.Pointer[authHolder]
	binder     *push.SessionBinder
	ingest     ingestState

	streams    atomic.Int64
	lagCutoffs atomic.Uint64
	slowEnded  atomic.Uint64
	writes     atomic.Uint64
	holds      atomic.Uint64
	overload   overloadDetector
	connected  atomic.Uint64
	resets     atomic.Uint64
	replayed   atomic.Uint64
	delivered  atomic.Uint64
}

// New builds a Server and starts its heartbeat ticker. Close stops it.
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
	if cfg.MaxTopicsPerStream <= 0 {
		cfg.MaxTopicsPerStream = 32
	}
	if cfg.MaxEventBytes <= 0 {
		cfg.MaxEventBytes = 64 << 10
	}
	if cfg.MaxBatchEvents <= 0 {
		cfg.MaxBatchEvents = 100
	}
	if cfg.Heartbeat <= 0 {
		cfg.Heartbeat = 15 * time.Second
	}
	if cfg.RetryMin <= 0 {
		cfg.RetryMin = time.Second
	}
	if cfg.RetryMax < cfg.RetryMin {
		cfg.RetryMax = max(5*time.Second, cfg.RetryMin)
	}
	if cfg.CoalesceLate == 0 {
		cfg.CoalesceLate = 20 * time.Millisecond
	}
	if cfg.WriteTimeout <= 0 {
		cfg.WriteTimeout = 10 * time.Second
	}
	if cfg.BodyTimeout <= 0 {
		cfg.BodyTimeout = 15 * time.Second
	}
	if cfg.ReplayPage <= 0 {
		cfg.ReplayPage = 500
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Node == "" {
		cfg.Node = "herald"
	}
	if cfg.LoadInterval <= 0 {
		cfg.LoadInterval = time.Second
	}
	if cfg.ReplicaWait <= 0 {
		cfg.ReplicaWait = 2 * time.Second
	}
	if cfg.RegionInterval <= 0 {
		cfg.RegionInterval = time.Second
	}
	if cfg.EvacuationWindow <= 0 {
		cfg.EvacuationWindow = 30 * time.Second
	}
	if cfg.EvacuationCatchUp <= 0 {
		cfg.EvacuationCatchUp = time.Minute
	}
	stores := map[string]push.Store{cfg.Store.Origin(): cfg.Store}
	origins := []string{cfg.Store.Origin()}
	for _, r := range cfg.Remotes {
		if r == nil {
			return nil, errors.New("server: nil remote store")
		}
		if _, dup := stores[r.Origin()]; dup {
			return nil, fmt.Errorf("server: two stores for origin %q", r.Origin())
		}
		stores[r.Origin()] = r
		origins = append(origins, r.Origin())
	}
	if _, err := push.NewCursor([]string{"t"}, origins); err != nil {
		return nil, fmt.Errorf("server: regions: %w", err)
	}
	s := &Server{
		cfg:     cfg,
		log:     cfg.Logger.With("component", "http"),
		store:   cfg.Store,
		stores:  stores,
		hub:     cfg.Hub,
		origins: origins,
		closing: make(chan struct{}),
		table:   newStreamTable(),
	}
	s.binder = cfg.Sessions
	if s.binder == nil {
		s.binder = push.RandomSessionBinder()
	}
	s.closed, s.markClosed = context.WithCancel(context.Background())
	s.region.links = make(map[string]bool)
	s.region.downSince = make(map[string]time.Time)
	s.auth.Store(&authHolder{cfg.Auth})
	s.bufs.New = func() any { b := make([]byte, 0, 4096); return &b }
	s.engine = s.routes()
	s.wg.Add(1)
	go s.heartbeat()
	if cfg.Cluster != nil {
		s.wg.Add(1)
		go s.clusterLoop()
	}
	s.wg.Add(1)
	go s.regionLoop()
	return s, nil
}

// Handler returns the public HTTP handler.
func (s *Server) Handler() http.Handler { return s.engine }

// Stats are cumulative counters of the stream endpoint.
type Stats struct {
	Streams   int64  `json:"streams"`   // open now
	Connected uint64 `json:"connected"` // streams accepted
	Resets    uint64 `json:"resets"`    // herald.reset events sent
	Replayed  uint64 `json:"replayed"`  // events written from history
	Delivered uint64 `json:"delivered"` // events written in total
	// LagCutoffs counts streams that ended because their oldest queued event
	// waited longer than the queue's MaxLag when the stream got to run.
	LagCutoffs uint64 `json:"lag_cutoffs"`
	// SlowCutoffs counts subscribers the hub cut off because their queue
	// overflowed (events or bytes).
	SlowCutoffs uint64 `json:"slow_cutoffs"`
	// SlowEnded counts streams that ended as slow for any reason: queue
	// lag or overflow, or a write that missed its deadline.
	SlowEnded uint64 `json:"slow_ended"`
	// Writes counts live-loop writes that carried queued events; Delivered
	// over Writes is how many events a write carries (batching).
	Writes uint64 `json:"writes"`
	// Holds counts writes held back by coalescing (stream.coalesce_window).
	Holds uint64 `json:"holds"`
}

// Stats returns the stream counters.
func (s *Server) Stats() Stats {
	return Stats{
		Streams:     s.streams.Load(),
		Connected:   s.connected.Load(),
		Resets:      s.resets.Load(),
		Replayed:    s.replayed.Load(),
		Delivered:   s.delivered.Load(),
		LagCutoffs:  s.lagCutoffs.Load(),
		SlowCutoffs: s.hub.Stats().SlowCutoffs,
		SlowEnded:   s.slowEnded.Load(),
		Writes:      s.writes.Load(),
		Holds:       s.holds.Load(),
	}
}

// Close ends every open stream (clients reconnect and resume) and stops the
// heartbeat. It does not close Store or Hub, which the caller owns.
func (s *Server) Close() error {
	s.once.Do(func() {
		close(s.closing)
		s.markClosed()
	})
	s.wg.Wait()
	return nil
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
	if c.Request.URL.Path == streamPath {
		_ = rc.SetWriteDeadline(time.Time{})
		c.Next()
		return
	}
	now := time.Now()
	_ = rc.SetReadDeadline(now.Add(s.cfg.BodyTimeout))
	_ = rc.SetWriteDeadline(now.Add(s.cfg.BodyTimeout + s.cfg.WriteTimeout))
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
			if fp, ok := v.(*freshStackPanic); ok {
				attrs = append(attrs, "stack", string(fp.stack))
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
	select {
	case <-s.closing:
		s.writeError(c, push.ErrClosed)
		return
	default:
	}
	if s.draining.Load() {
		s.writeError(c, errf(http.StatusServiceUnavailable, CodeDraining, "node is draining"))
		return
	}
	if s.evacuating.Load() {
		s.writeError(c, &apiError{Status: http.StatusServiceUnavailable, Code: CodeEvacuating,
			Message: "region is being evacuated", Alternates: s.alternates()})
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

// heartbeatWave is how many streams the heartbeat wakes before it yields.
const heartbeatWave = 256

func (s *Server) heartbeat() {
	defer s.wg.Done()
	t := time.NewTicker(s.cfg.Heartbeat)
	defer t.Stop()
	for {
		select {
		case <-s.closing:
			return
		case <-t.C:
			// One pass over the live streams, waking each that wrote
			// nothing for half an interval: a keep-alive needs no channel
			// of its own in the per-delivery select (a channel shared by
			// every stream was contended on each pass), and a busy stream
			// needs no keep-alive. The pass yields after every
			// heartbeatWave wakes, so the streams it wakes do not queue the
			// publish path behind all of them (see hub.PacedFanOut).
			quiet := time.Now().Add(-s.cfg.Heartbeat / 2).UnixNano()
			woken := 0
			for _, ls := range s.table.snapshot() {
				if sub := ls.sub.Load(); sub != nil && ls.wrote.Load() <= quiet {
					sub.Wake()
					if woken++; woken%heartbeatWave == 0 {
						runtime.Gosched()
					}
				}
			}
		}
	}
}
