package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/coder/websocket"

	"github.com/heraldpush/herald/push"
	"github.com/heraldpush/herald/push/hub"
	"github.com/heraldpush/herald/push/node"
	"github.com/heraldpush/herald/push/stream"
	"github.com/heraldpush/herald/push/wire"
)

// WebSocket close codes (ADR 0023). 4000-4099: the stream ended, reconnect
// with the last id after the close reason's retry_ms; 4307: go to a peer or
// region named by the herald.moved before it; 4400-4499: the request is
// wrong, do not retry it as is; 4503: not now, retry after retry_ms.
const (
	CloseDrain        websocket.StatusCode = 4001
	CloseRebalance    websocket.StatusCode = 4002
	CloseShutdown     websocket.StatusCode = 4003
	CloseSlow         websocket.StatusCode = 4004
	CloseAuthExpired  websocket.StatusCode = 4005
	CloseError        websocket.StatusCode = 4006
	CloseEvacuate     websocket.StatusCode = 4007
	CloseAdmin        websocket.StatusCode = 4008
	CloseTakeover     websocket.StatusCode = 4009
	CloseMoved        websocket.StatusCode = 4307
	CloseBadRequest   websocket.StatusCode = 4400
	CloseUnauthorized websocket.StatusCode = 4401
	CloseForbidden    websocket.StatusCode = 4403
	CloseAuthTimeout  websocket.StatusCode = 4408
	CloseRetry        websocket.StatusCode = 4503
)

// endCodes maps why a stream ended to its close code.
var endCodes = map[string]websocket.StatusCode{
	stream.EndDrain: CloseDrain, stream.EndRebalance: CloseRebalance, stream.EndShutdown: CloseShutdown,
	stream.EndSlow: CloseSlow, stream.EndAuth: CloseAuthExpired, stream.EndError: CloseError,
	stream.EndEvacuate: CloseEvacuate, stream.EndAdmin: CloseAdmin, stream.EndTakeover: CloseTakeover,
}

// closeReason is the JSON of a close frame's reason (at most 123 bytes).
type closeReason struct {
	Reason  string `json:"reason"`
	RetryMS int64  `json:"retry_ms,omitempty"`
}

func (r closeReason) String() string {
	b, _ := json.Marshal(r)
	return string(b)
}

// wsTransport frames a stream as one JSON text message per event
// (node.Transport). Frames are buffered back to back; ends holds where
// each message ends.
type wsTransport struct {
	s    *Server
	conn *websocket.Conn
	cork *corkConn
	// pinger sends a keep-alive ping without waiting for its pong (see
	// wsConn.ping); nil sends none.
	pinger func()
	// wmu serialises writes of the stream with the reader's answers
	// (acks), so that neither waits on the other's context.
	wmu *sync.Mutex
	pooledBuf
	ends []int
	ping bool
	// retry is the reconnection delay of the close to come.
	retry time.Duration
	// refused is set when the connect was answered (Fail, Refuse): the
	// handler then closes with code and reason.
	refused *wsClose
	// base is the connection's context; timeout bounds each write.
	base    context.Context
	timeout time.Duration
}

// wsClose is how a refused connect closes.
type wsClose struct {
	code   websocket.StatusCode
	reason closeReason
}

func (t *wsTransport) Accept(time.Duration) {}

// Fail sends the error's JSON body as a herald.error and closes with
// 4000 + its HTTP status.
func (t *wsTransport) Fail(err error) {
	ae := toAPIError(err)
	t.sendError("", ae)
	t.refused = &wsClose{code: wsStatus(ae.Status), reason: closeReason{Reason: ae.Code}}
}

// sendError writes one herald.error frame at once.
func (t *wsTransport) sendError(ref string, ae *apiError) {
	body, _ := json.Marshal(wsError{Ref: ref, Error: errorDetail{Code: ae.Code, Message: ae.Message, Alternates: ae.Alternates, Cursor: ae.Cursor}, RetryAfter: ae.RetryAfter})
	var id []byte
	if ae.Cursor != "" {
		id = []byte(ae.Cursor)
	}
	t.writeNow(wire.AppendFrame(nil, id, wire.EventError, "", body))
}

// wsError is a herald.error's data.
type wsError struct {
	Ref        string      `json:"ref,omitempty"`
	Error      errorDetail `json:"error"`
	RetryAfter int         `json:"retry_after,omitempty"`
}

// Refuse answers a connect that is turned away: a peer to go to is a
// herald.moved naming it and close 4307; anything else a herald.error with
// the same body an SDK client's 503 carries and close 4503 with retry_ms.
// A fresh stream's position goes out as the frame's id.
func (t *wsTransport) Refuse(r node.Refusal) {
	var id []byte
	if r.Cursor != "" {
		id = []byte(r.Cursor)
	}
	switch {
	case r.Kind == node.RefuseSteer && r.Peer != "":
		data, _ := json.Marshal(push.Moved{Reason: "redirect", Alternates: []string{r.Peer}})
		t.writeNow(wire.AppendFrame(nil, id, push.EventMoved, "", data))
		t.refused = &wsClose{code: CloseMoved, reason: closeReason{Reason: "redirect"}}
		return
	case r.Kind == node.RefuseGuard:
		ra := node.RetryAfter(r.Err)
		ms := int64(ra) * 1000
		t.sendError("", &apiError{Code: CodeOverloaded, Message: "this node is not taking new streams now; retry after retry_ms", RetryAfter: ra, Cursor: r.Cursor})
		t.refused = &wsClose{code: CloseRetry, reason: closeReason{Reason: CodeOverloaded, RetryMS: ms + rand.Int64N(ms+1)}}
		return
	}
	code := CodeUnavailable
	if r.Kind == node.RefuseSteer {
		code = CodeOverloaded
		switch r.State {
		case "evacuating":
			code = CodeEvacuating
		case "draining":
			code = CodeDraining
		}
	}
	t.sendError("", &apiError{Code: code, Message: "this node is not taking new streams; retry", RetryAfter: int(max(1, r.Retry.Milliseconds()/1000)), Alternates: r.Alternates, Cursor: r.Cursor})
	t.refused = &wsClose{code: CloseRetry, reason: closeReason{Reason: code, RetryMS: r.Retry.Milliseconds()}}
}

// writeNow writes one message outside the stream's batching.
func (t *wsTransport) writeNow(msg []byte) {
	ctx, cancel := context.WithTimeout(t.base, t.timeout)
	defer cancel()
	t.wmu.Lock()
	defer t.wmu.Unlock()
	_ = t.conn.Write(ctx, websocket.MessageText, msg)
}

// Release returns the write buffer to the pool.
func (t *wsTransport) Release() {
	t.release()
	t.ends = t.ends[:0]
}

func (t *wsTransport) Buffered() int { return len(t.buf) }

func (t *wsTransport) end() { t.ends = append(t.ends, len(t.buf)) }

// appendID appends the frame head with cur as id.
func (t *wsTransport) appendID(cur *push.Cursor) {
	t.buf = append(t.buf, `{"id":"`...)
	t.buf = cur.AppendEncode(t.buf)
	t.buf = append(t.buf, '"', ',')
}

// wsTail is a delivery's frame after its id, shared by every subscriber.
func wsTail(e *push.Event) []byte { return wire.AppendFrameTail(nil, e.Type, e.Topic, e.Data) }

func (t *wsTransport) Delivery(cur *push.Cursor, d *hub.Delivery) {
	t.grab()
	t.appendID(cur)
	t.buf = append(t.buf, d.Frame(wsTail)...)
	t.end()
}

func (t *wsTransport) Event(cur *push.Cursor, e *push.Event) {
	t.grab()
	t.appendID(cur)
	t.buf = wire.AppendFrameTail(t.buf, e.Type, e.Topic, e.Data)
	t.end()
}

func (t *wsTransport) Control(cur *push.Cursor, typ string, data []byte) {
	t.grab()
	if cur != nil {
		t.appendID(cur)
	} else {
		t.buf = append(t.buf, '{')
	}
	t.buf = wire.AppendFrameTail(t.buf, typ, "", data)
	t.end()
}

// KeepAlive asks the next Flush for a ping (the pong proves the client
// reads; a client that does not answer within a heartbeat interval is cut
// off as slow).
func (t *wsTransport) KeepAlive() { t.ping = true }

// Retry records the reconnection delay for the close reason.
func (t *wsTransport) Retry(d time.Duration) { t.retry = d }

// Flush writes the buffered messages (and a pending ping) in one write
// under the write deadline: the messages are corked, then sent together.
func (t *wsTransport) Flush() error {
	if len(t.ends) == 0 && !t.ping {
		return nil
	}
	err := t.write()
	t.Release()
	if err != nil && errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%w: %v", os.ErrDeadlineExceeded, err)
	}
	return err
}

func (t *wsTransport) write() error {
	if len(t.ends) == 0 {
		if t.ping {
			t.ping = false
			t.pinger()
		}
		return nil
	}
	t.wmu.Lock()
	t.cork.cork()
	start := 0
	var err error
	for _, end := range t.ends {
		// Corked writes do not block, so they need no deadline of their
		// own (and a context that is never done costs the library no
		// registration per message); the uncork below has the deadline.
		if err = t.conn.Write(context.Background(), websocket.MessageText, t.buf[start:end]); err != nil {
			break
		}
		start = end
	}
	if uerr := t.cork.uncork(); err == nil {
		err = uerr
	}
	t.wmu.Unlock()
	if err == nil && t.ping {
		t.ping = false
		t.pinger()
	}
	return err
}

// stop is called when the stream's transport is done with.
func (t *wsTransport) stop() {}

// wsStatus maps an HTTP status to a close code.
func wsStatus(status int) websocket.StatusCode {
	if status >= http.StatusBadRequest && status < 600 {
		return websocket.StatusCode(4000 + status)
	}
	return CloseError
}
