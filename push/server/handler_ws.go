package server

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
	"github.com/gin-gonic/gin"
	"go.opentelemetry.io/otel/trace"

	"github.com/heraldpush/herald/observability"
	"github.com/heraldpush/herald/push"
	"github.com/heraldpush/herald/push/auth"
	"github.com/heraldpush/herald/push/node"
	"github.com/heraldpush/herald/push/stream"
	"github.com/heraldpush/herald/push/wire"
)

// wsPath is the WebSocket stream endpoint; its requests are long-lived.
const wsPath = "/v1/ws"

// WSAuthTimeout bounds how long a WebSocket that presented no credential
// at the handshake may take to send its auth message; then it is closed
// with 4408.
const WSAuthTimeout = 10 * time.Second

// wsConn is one WebSocket connection: the handler's goroutine runs its
// streams (one at a time: a change of topics ends one and opens the
// next); its reader goroutine answers the client's messages.
type wsConn struct {
	s    *Server
	conn *websocket.Conn
	cork *corkConn
	wmu  sync.Mutex
	ctx  context.Context
	// principal is the authenticated principal, nil until auth.
	principal atomic.Pointer[auth.Principal]
	// authc receives the token of the first auth message.
	authc chan string
	// pinging is set while a keep-alive ping waits for its pong; pings
	// counts those goroutines (the handler waits for them).
	pinging atomic.Bool
	pings   sync.WaitGroup
	mu      sync.Mutex
	op      *node.Opened // the stream running now, nil between streams
	// pending is a change of topics waiting for the stream to end.
	pending *wire.Request
}

// handleWS serves GET /v1/ws: the stream of /v1/stream, framed as
// WebSocket messages (ADR 0023), with subscribe, unsubscribe and publish
// from the client on the same socket. Every answer after the handshake is
// in band: a herald.error frame and a close code (browsers see no HTTP
// status of a WebSocket handshake).
func (s *Server) handleWS(c *gin.Context) {
	if !s.holdSocket() {
		s.refuseClosedWS(c)
		return
	}
	defer s.sockets.Done()
	r := c.Request
	req, qerr := s.streamQuery(r, observability.TransportWS)
	p, aerr := s.wsPrincipal(r)
	cw := &corkWriter{ResponseWriter: c.Writer, timeout: s.cfg.Stream.WriteTimeout}
	conn, err := websocket.Accept(cw, r, s.wsAcceptOptions())
	if err != nil {
		s.log.DebugContext(r.Context(), "websocket handshake refused", "err", err)
		return // Accept answered: not a WebSocket handshake, or a foreign origin
	}
	conn.SetReadLimit(int64(wire.MaxRequestBytes + 2*s.cfg.Limits.MaxEventBytes))
	ctx, cancel := context.WithCancel(context.WithoutCancel(r.Context()))
	defer cancel()
	ws := &wsConn{s: s, conn: conn, cork: cw.conn, ctx: ctx, authc: make(chan string, 1)}
	var readers sync.WaitGroup
	readers.Add(1)
	go func() {
		defer readers.Done()
		defer cancel()
		ws.read()
	}()
	defer func() {
		_ = conn.CloseNow()
		readers.Wait()
		ws.pings.Wait()
	}()
	reject := func(err error) {
		s.cfg.Telemetry.Metrics().Connect(ctx, observability.TransportWS, observability.ConnectRejected)
		t := ws.transport()
		t.Fail(err)
		ws.close(t.refused.code, t.refused.reason)
	}
	if qerr != nil {
		reject(qerr)
		return
	}
	if errors.Is(aerr, auth.ErrNoCredentials) {
		if p, aerr = ws.awaitAuth(r); aerr == errAuthTimeout {
			s.cfg.Telemetry.Metrics().Connect(ctx, observability.TransportWS, observability.ConnectRejected)
			ws.close(CloseAuthTimeout, closeReason{Reason: "auth_timeout"})
			return
		}
	}
	if aerr == nil {
		aerr = s.authorise(&req, p)
	}
	if aerr != nil {
		reject(aerr)
		return
	}
	ws.principal.Store(p)
	req.ClientIP = c.ClientIP()
	for {
		t := ws.transport()
		var op *node.Opened
		stream.OnFreshStack(func() { op = s.node.Open(ctx, req, t) })
		if op == nil {
			t.stop()
			if t.refused != nil {
				ws.close(t.refused.code, t.refused.reason)
			}
			return // answered, or ended during connect
		}
		ws.setOp(op)
		op.Live()
		pending := ws.setOp(nil)
		t.stop()
		end := op.End()
		if end != stream.EndResubscribe || pending == nil {
			op.Close()
			ws.closeStream(end, t.retry)
			return
		}
		next, err := ws.resubscribe(op.Cursor(), pending, req)
		op.Close()
		if err != nil {
			ws.answerError(pending.Ref, err)
			// The stream continues with its topics: reopen at its cursor.
			next = req
			next.Cursor, next.Strict, next.Resets = op.Cursor().String(), true, nil
		}
		req = next
	}
}

// refuseClosedWS answers a WebSocket that arrives while the server closes
// (its listener still up, as while the process stops) the way every
// refusal is answered: in band, a herald.error (draining) and close 4503
// with a retry hint, where an HTTP error to the handshake would leave a
// browser with a bare failure and no delay. It carries no stream position:
// the request is not authenticated. Close does not wait for it (it holds
// nothing of the node's); it ends within the write timeout and the
// library's bounded close handshake.
func (s *Server) refuseClosedWS(c *gin.Context) {
	cw := &corkWriter{ResponseWriter: c.Writer, timeout: s.cfg.Stream.WriteTimeout}
	conn, err := websocket.Accept(cw, c.Request, s.wsAcceptOptions())
	if err != nil {
		return // Accept answered
	}
	defer conn.CloseNow()
	ctx := c.Request.Context()
	s.cfg.Telemetry.Metrics().Connect(ctx, observability.TransportWS, observability.ConnectShed)
	t := &wsTransport{s: s, conn: conn, cork: cw.conn, wmu: &sync.Mutex{}, base: ctx, timeout: s.cfg.Stream.WriteTimeout}
	t.Refuse(node.Refusal{Kind: node.RefuseSteer, State: "draining", Retry: s.node.RetryDelay()})
	_ = conn.Close(t.refused.code, t.refused.reason.String())
}

var errAuthTimeout = errors.New("no auth message in time")

// wsPrincipal authenticates the handshake: credential headers or cookie
// as on /v1/stream, else an access_token query parameter (browsers cannot
// set headers on a WebSocket). auth.ErrNoCredentials when there is none:
// the client may then send an auth message first.
func (s *Server) wsPrincipal(r *http.Request) (*auth.Principal, error) {
	p, err := s.principal(r, true)
	if !errors.Is(err, auth.ErrNoCredentials) {
		return p, err
	}
	if tok := r.URL.Query().Get("access_token"); tok != "" {
		return s.tokenPrincipal(r, tok)
	}
	return nil, err
}

// tokenPrincipal authenticates a bare token (JWT or API key) as if it came
// in an Authorization: Bearer header.
func (s *Server) tokenPrincipal(r *http.Request, tok string) (*auth.Principal, error) {
	r2 := r.Clone(r.Context())
	r2.Header = http.Header{"Authorization": {"Bearer " + tok}}
	return s.principal(r2, false)
}

// wsAcceptOptions allows the origins of the CORS configuration ("*": any);
// without it only same-origin pages may open a socket (coder/websocket's
// default), which protects cookie credentials from other sites.
func (s *Server) wsAcceptOptions() *websocket.AcceptOptions {
	o := &websocket.AcceptOptions{}
	for _, origin := range s.cfg.CORS.AllowedOrigins {
		if origin == "*" {
			o.InsecureSkipVerify = true
			continue
		}
		if u, err := url.Parse(origin); err == nil && u.Host != "" {
			o.OriginPatterns = append(o.OriginPatterns, u.Host)
		}
	}
	return o
}

func (ws *wsConn) transport() *wsTransport {
	return &wsTransport{s: ws.s, conn: ws.conn, cork: ws.cork, wmu: &ws.wmu, base: ws.ctx, timeout: ws.s.cfg.Stream.WriteTimeout,
		pinger: ws.ping, pooledBuf: pooledBuf{pool: &ws.s.bufs}}
}

// ping sends a keep-alive ping and waits for its pong on a goroutine of
// its own, so that the stream's writes do not wait for a round trip (a
// fan-out pinging thousands of idle streams at once would otherwise hold
// every one of them for its client's answer). A pong that does not come
// within a heartbeat interval (at least the write timeout) ends the stream
// as slow; it resumes from its cursor. One ping at a time.
func (ws *wsConn) ping() {
	if !ws.pinging.CompareAndSwap(false, true) {
		return
	}
	wait := max(ws.s.cfg.Stream.Heartbeat, ws.s.cfg.Stream.WriteTimeout)
	ws.pings.Add(1)
	go func() {
		defer ws.pings.Done()
		defer ws.pinging.Store(false)
		ctx, cancel := context.WithTimeout(ws.ctx, wait)
		defer cancel()
		if err := ws.conn.Ping(ctx); err != nil && ws.ctx.Err() == nil {
			ws.mu.Lock()
			op := ws.op
			ws.mu.Unlock()
			if op != nil {
				op.Kick(stream.EndSlow, 0)
			}
		}
	}()
}

// awaitAuth waits, at most WSAuthTimeout, for the client's auth message.
func (ws *wsConn) awaitAuth(r *http.Request) (*auth.Principal, error) {
	if ws.s.cfg.Dev {
		return auth.DevPrincipal(), nil
	}
	t := time.NewTimer(WSAuthTimeout)
	defer t.Stop()
	select {
	case tok := <-ws.authc:
		return ws.s.tokenPrincipal(r, tok)
	case <-t.C:
		return nil, errAuthTimeout
	case <-ws.ctx.Done():
		return nil, errAuthTimeout
	case <-ws.s.node.Done():
		return nil, errAuthTimeout
	}
}

// setOp records the stream running now and returns the change of topics
// that was waiting for the previous one, if any.
func (ws *wsConn) setOp(op *node.Opened) *wire.Request {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	ws.op = op
	if op != nil {
		if ws.pending != nil { // asked for while the stream was opening
			op.Kick(stream.EndResubscribe, 0)
		}
		return nil
	}
	p := ws.pending
	ws.pending = nil
	return p
}

// close closes the connection with code and reason (the close handshake
// is bounded by coder/websocket).
func (ws *wsConn) close(code websocket.StatusCode, reason closeReason) {
	_ = ws.conn.Close(code, reason.String())
}

// closeStream closes after the stream ended for end, with retry as the
// reconnection hint.
func (ws *wsConn) closeStream(end string, retry time.Duration) {
	code, ok := endCodes[end]
	if !ok {
		_ = ws.conn.CloseNow() // the client left
		return
	}
	ws.close(code, closeReason{Reason: end, RetryMS: retry.Milliseconds()})
}

// read answers the client's messages until the connection ends.
func (ws *wsConn) read() {
	authSent := false
	for {
		typ, msg, err := ws.conn.Read(ws.ctx)
		if err != nil {
			return
		}
		if typ != websocket.MessageText {
			ws.answerError("", errf(http.StatusBadRequest, CodeInvalidJSON, "send JSON text messages"))
			continue
		}
		rq, err := wire.ParseRequest(msg, ws.s.cfg.Limits.MaxTopicsPerStream)
		if err != nil {
			ws.answerError("", errf(http.StatusBadRequest, CodeInvalidJSON, err.Error()))
			continue
		}
		p := ws.principal.Load()
		switch {
		case rq.Type == wire.TypeAuth:
			if authSent || p != nil {
				ws.answerError(rq.Ref, errf(http.StatusBadRequest, CodeInvalidJSON, "already authenticated"))
				continue
			}
			authSent = true
			ws.authc <- rq.Token
		case p == nil:
			ws.answerError(rq.Ref, errf(http.StatusUnauthorized, CodeUnauthorized, "authenticate first"))
		case rq.Type == wire.TypePublish:
			ws.publish(p, rq)
		default:
			ws.change(p, rq)
		}
	}
}

// change asks the running stream to end so that the next opens with the
// topics of rq (subscribe, unsubscribe).
func (ws *wsConn) change(p *auth.Principal, rq wire.Request) {
	for _, t := range rq.Topics {
		if err := push.ValidateTopic(t); err != nil {
			ws.answerError(rq.Ref, err)
			return
		}
		if rq.Type == wire.TypeSubscribe && !p.CanSubscribe(t) {
			ws.answerError(rq.Ref, errf(http.StatusForbidden, CodeForbidden, "not allowed to subscribe to "+strconv.Quote(t)))
			return
		}
	}
	ws.mu.Lock()
	op, busy := ws.op, ws.pending != nil
	if !busy {
		ws.pending = &rq // taken by the stream's end, or kicks it as it opens (setOp)
	}
	ws.mu.Unlock()
	switch {
	case busy:
		ws.answerError(rq.Ref, errf(http.StatusConflict, CodeInvalidQuery, "a change of topics is in progress; retry after its herald.hello"))
	case op != nil:
		op.Kick(stream.EndResubscribe, 0)
	}
}

// resubscribe is the request of the stream that follows cur after rq.
func (ws *wsConn) resubscribe(cur *push.Cursor, rq *wire.Request, req node.Request) (node.Request, error) {
	var add, remove []string
	if rq.Type == wire.TypeSubscribe {
		add = rq.Topics
	} else {
		remove = rq.Topics
	}
	ctx, cancel := context.WithTimeout(ws.ctx, 5*time.Second)
	defer cancel()
	id, topics, resets, err := ws.s.node.Resubscribe(ctx, cur, add, remove, rq.Cursor)
	if err != nil {
		return req, err
	}
	if len(topics) > ws.s.cfg.Limits.MaxTopicsPerStream {
		return req, errf(http.StatusBadRequest, CodeInvalidQuery, "a stream holds at most "+strconv.Itoa(ws.s.cfg.Limits.MaxTopicsPerStream)+" topics")
	}
	req.Topics, req.Cursor, req.Strict, req.From, req.Resets = topics, id, true, "", resets
	return req, nil
}

// answerError sends a herald.error for the request ref.
func (ws *wsConn) answerError(ref string, err error) {
	if errors.Is(err, node.ErrResubscribe) {
		err = errf(http.StatusBadRequest, CodeInvalidQuery, err.Error())
	}
	ae := toAPIError(err)
	if ae.Status >= 500 && ae.Code == CodeInternal {
		ws.s.log.ErrorContext(ws.ctx, "websocket request failed", "err", err)
	}
	ws.transport().sendError(ref, ae)
}

// wsAck is a herald.ack's data.
type wsAck struct {
	Ref    string             `json:"ref,omitempty"`
	Result wire.PublishResult `json:"result"`
}

// publish appends one event for the client, with the same grants,
// validation, idempotency and protection layers as POST
// /v1/topics/{topic}/events, and answers herald.ack or herald.error.
func (ws *wsConn) publish(p *auth.Principal, rq wire.Request) {
	s := ws.s
	start := time.Now()
	tel := s.cfg.Telemetry
	ctx, srv := tel.StartSpan(ws.ctx, "WS publish", trace.SpanKindServer, serverSpan...)
	ctx, span := tel.StartPublish(ctx, rq.Topic)
	res, result, err := ws.publishOne(ctx, span, p, rq)
	s.endPublish(ctx, srv, span, result, start)
	if err != nil {
		ws.answerError(rq.Ref, err)
		return
	}
	data, _ := json.Marshal(wsAck{Ref: rq.Ref, Result: res})
	ws.transport().writeNow(wire.AppendFrame(nil, nil, wire.EventAck, "", data))
}

func (ws *wsConn) publishOne(ctx context.Context, span trace.Span, p *auth.Principal, rq wire.Request) (wire.PublishResult, string, error) {
	s := ws.s
	if err := push.ValidateTopic(rq.Topic); err != nil {
		return wire.PublishResult{}, observability.PublishRejected, err
	}
	if !p.CanPublish(rq.Topic) {
		return wire.PublishResult{}, observability.PublishRejected, errf(http.StatusForbidden, CodeForbidden, "not allowed to publish to "+strconv.Quote(rq.Topic))
	}
	endPublish, err := s.beginPublish()
	if err != nil {
		return wire.PublishResult{}, observability.PublishRejected, err
	}
	defer endPublish()
	d, err := s.draft(rq.Event, rq.Data, rq.IdempotencyKey, p)
	if err != nil {
		return wire.PublishResult{}, observability.PublishRejected, err
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Limits.BodyTimeout+s.cfg.Stream.WriteTimeout)
	defer cancel()
	return s.publishDraft(ctx, span, p, rq.Topic, d)
}
