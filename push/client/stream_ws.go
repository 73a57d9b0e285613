package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/coder/websocket"

	"github.com/heraldpush/herald/push"
	"github.com/heraldpush/herald/push/wire"
)

// connectWS is connect over GET /v1/ws (ADR 0023): the same events, ids
// and control events as SSE, one JSON message each. A refusal is a
// herald.error (or herald.moved) and a close whose reason carries the
// retry hint; the stream ends with a close that says how to come back.
func (s *Stream) connectWS(ctx context.Context, epIdx int, handler func(Event) error) outcome {
	ep := s.endpoints[epIdx]
	req, err := s.newRequest(ctx, ep)
	if err != nil {
		return outcome{err: err, permanent: true, moveTo: -1}
	}
	u := *req.URL
	u.Path = ep.JoinPath("v1", "ws").Path
	if u.Scheme == "https" {
		u.Scheme = "wss"
	} else {
		u.Scheme = "ws"
	}
	// The dial answers within the idle timeout, like an SSE response's
	// headers; after it, the server's pings prove the connection alive.
	idle := s.cfg.IdleTimeout
	connCtx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	dctx, dcancel := connCtx, context.CancelFunc(func() {})
	if idle > 0 {
		dctx, dcancel = context.WithTimeout(connCtx, idle)
	}
	var alive *time.Timer
	conn, resp, err := websocket.Dial(dctx, u.String(), &websocket.DialOptions{
		HTTPClient: s.hc, HTTPHeader: req.Header,
		OnPingReceived: func(context.Context, []byte) bool {
			if alive != nil {
				alive.Reset(idle)
			}
			return true
		},
	})
	dcancel()
	if err != nil {
		if resp != nil && resp.StatusCode != http.StatusSwitchingProtocols {
			o, _ := s.checkResponse(resp)
			o.moveTo = -1
			return o
		}
		if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
			err = ErrIdleTimeout
		}
		return outcome{err: err, moveTo: -1}
	}
	defer func() { _ = conn.CloseNow() }()
	limit := s.cfg.MaxEventSize
	if limit <= 0 {
		limit = 1 << 20
	}
	conn.SetReadLimit(int64(2*limit + 4096))
	if idle > 0 {
		alive = time.AfterFunc(idle, func() { cancel(errIdle) })
		defer alive.Stop()
	}
	endpoint := s.names[epIdx]
	out := outcome{moveTo: -1}
	first := true
	for {
		typ, msg, err := conn.Read(connCtx)
		if err != nil {
			out.err = s.wsEnd(err, &out)
			if errors.Is(context.Cause(connCtx), errIdle) {
				out.err = ErrIdleTimeout
			}
			break
		}
		if alive != nil {
			alive.Reset(idle)
		}
		var f wire.Frame
		if typ != websocket.MessageText || json.Unmarshal(msg, &f) != nil {
			if err := cutShort(connCtx, conn); err != nil {
				out.err = err // a dropped connection: resume
				break
			}
			out.err = fmt.Errorf("%w: not a Herald frame", ErrNotEventStream)
			out.permanent = true
			break
		}
		if f.Event == wire.EventError {
			out.err = s.wsError(f, &out)
			continue // the close that follows says how to come back
		}
		if first && f.Event == push.EventMoved {
			// A refused connect: go where it says (an SSE client follows
			// the same answer as a 307 without seeing it).
			var m push.Moved
			if json.Unmarshal([]byte(f.Data), &m) == nil {
				out.moveTo = s.learn(m.Alternates, epIdx)
			}
			if f.ID != "" && s.LastEventID() == "" {
				s.setLastID(f.ID)
			}
			continue
		}
		if first {
			first = false
			{
				s.connected = true
				s.log.Info("stream connected", "endpoint", ep.Redacted(), "transport", TransportWS)
				if s.cfg.OnConnect != nil {
					s.cfg.OnConnect(endpoint)
				}
				defer func() { s.disconnected(ctx, endpoint, out) }()
			}
		}
		id := f.ID
		if id == "" {
			id = s.LastEventID() // as an SSE client keeps its last id
		}
		if !s.handle(Event{ID: id, Type: f.Event, Data: f.Data}, handler, epIdx, &out) {
			return out
		}
	}
	return out
}

// cutShort tells a message cut short by the connection's end from a
// frame that is not Herald's, after msg failed to parse: it returns the
// error that ended the connection, or nil when the connection goes on (or
// does not end within a second). coder/websocket hands over a message cut
// short as whole when the cut falls where one of its reads ended (its
// message reader takes the payload read's EOF for the message's end); a
// node cuts a slow consumer's socket mid-write, so this is a dropped
// connection to resume from the last id, not a foreign server to give up
// on. The connection is closed either way.
func cutShort(ctx context.Context, conn *websocket.Conn) error {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	_, _, err := conn.Read(ctx)
	if err == nil || ctx.Err() != nil || websocket.CloseStatus(err) != -1 {
		return nil
	}
	return fmt.Errorf("client: connection ended mid-message: %w", err)
}

// wsError reads a herald.error: its cursor (a fresh stream's position),
// retry hint and alternates, as readAPIError does for an HTTP answer.
func (s *Stream) wsError(f wire.Frame, out *outcome) error {
	var body struct {
		Error struct {
			Code       string   `json:"code"`
			Message    string   `json:"message"`
			Alternates []string `json:"alternates"`
			Cursor     string   `json:"cursor"`
		} `json:"error"`
		RetryAfter int `json:"retry_after"`
	}
	_ = json.Unmarshal([]byte(f.Data), &body)
	if body.Error.Cursor != "" && s.LastEventID() == "" {
		s.setLastID(body.Error.Cursor)
	}
	out.retryAfter = time.Duration(body.RetryAfter) * time.Second
	return &APIError{Code: body.Error.Code, Message: body.Error.Message, Alternates: body.Error.Alternates,
		Cursor: body.Error.Cursor, RetryAfter: out.retryAfter}
}

// wsEnd classifies the end of a socket: 4400-4499 (but 4408 and 4429)
// stop the stream, the rest reconnect, after the close reason's retry_ms.
func (s *Stream) wsEnd(err error, out *outcome) error {
	var ce websocket.CloseError
	if !errors.As(err, &ce) {
		return err
	}
	var reason struct {
		RetryMS int64 `json:"retry_ms"`
	}
	if json.Unmarshal([]byte(ce.Reason), &reason) == nil && reason.RetryMS > 0 {
		s.retry = time.Duration(reason.RetryMS) * time.Millisecond
	}
	code := int(ce.Code)
	var apiErr *APIError
	if errors.As(out.err, &apiErr) {
		// The herald.error before the close: the close code is its status.
		if code >= 4300 && code < 4600 {
			apiErr.Status = code - 4000
		}
		out.permanent = !apiErr.Temporary()
		if apiErr.Status == http.StatusServiceUnavailable {
			out.retryAfter = max(out.retryAfter, s.retry)
		}
		return out.err
	}
	out.permanent = code >= 4400 && code < 4500 && code != 4408 && code != 4429
	return err
}
