package server

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/heraldpush/herald/push"
	"github.com/heraldpush/herald/push/hub"
	"github.com/heraldpush/herald/push/node"
	"github.com/heraldpush/herald/push/sse"
)

// sseTransport frames a stream as text/event-stream (node.Transport).
type sseTransport struct {
	s  *Server
	c  *gin.Context
	w  gin.ResponseWriter
	rc *http.ResponseController
	// pooledBuf holds frames not yet written.
	pooledBuf
	// deadline is the write deadline currently armed on the connection.
	deadline time.Time
	timeout  time.Duration
}

func (s *Server) newSSE(c *gin.Context) *sseTransport {
	// The controller wraps the unwrapped writer: gin's Flush swallows
	// errors, and a failed flush must end the stream with its cause.
	var rw http.ResponseWriter = c.Writer
	if u, ok := c.Writer.(interface{ Unwrap() http.ResponseWriter }); ok {
		rw = u.Unwrap()
	}
	return &sseTransport{s: s, c: c, w: c.Writer, rc: http.NewResponseController(rw), timeout: s.cfg.Stream.WriteTimeout, pooledBuf: pooledBuf{pool: &s.bufs}}
}

// Accept answers 200 text/event-stream; the `retry:` field goes out with
// the hello.
func (t *sseTransport) Accept(retry time.Duration) {
	h := t.w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	h.Set("X-Content-Type-Options", "nosniff")
	t.c.Status(http.StatusOK)
	t.grab()
	t.buf = append(t.buf, "retry: "...)
	t.buf = strconv.AppendInt(t.buf, retry.Milliseconds(), 10)
	t.buf = append(t.buf, '\n')
}

// Fail answers with the JSON error body of err.
func (t *sseTransport) Fail(err error) { t.s.writeError(t.c, err) }

// Refuse turns a new stream away. A browser's EventSource gives up for
// good on any non-200, so it gets a 200 with a jittered `retry:` and an
// immediate close (a shed), its resume cursor as the block's id:; SDK
// clients that declare themselves with the Herald-Client header get
// 503 + Retry-After with the same information in the JSON body. A peer to
// go to is a 307 for every client (same path and query; browsers keep
// Last-Event-ID across the redirect).
func (t *sseTransport) Refuse(r node.Refusal) {
	c := t.c
	sdk := isSDKClient(c.Request)
	switch r.Kind {
	case node.RefuseSteer:
		if r.Peer != "" {
			u := *c.Request.URL
			if r.Cursor != "" {
				// A fresh stream has no Last-Event-ID for the browser to
				// keep across the redirect: the cursor goes in the query.
				q := u.Query()
				q.Set("last_event_id", r.Cursor)
				u.RawQuery = q.Encode()
			}
			c.Redirect(http.StatusTemporaryRedirect, strings.TrimRight(r.Peer, "/")+u.RequestURI())
			return
		}
		if sdk {
			code := CodeOverloaded
			switch r.State {
			case "evacuating":
				code = CodeEvacuating
			case "draining":
				code = CodeDraining
			}
			t.s.writeError(c, &apiError{Status: http.StatusServiceUnavailable, Code: code,
				Message: "this node is not taking new streams; retry", RetryAfter: int(max(1, r.Retry.Milliseconds()/1000)), Alternates: r.Alternates, Cursor: r.Cursor})
			return
		}
		t.shed(r.Retry.Milliseconds(), r.Cursor)
	case node.RefuseGuard:
		t.s.log.Debug("stream refused", "err", r.Err)
		ra := node.RetryAfter(r.Err)
		if sdk {
			t.s.writeError(c, &apiError{Status: http.StatusServiceUnavailable, Code: CodeOverloaded,
				Message: "this node is not taking new streams now; retry after the Retry-After delay", RetryAfter: ra, Cursor: r.Cursor})
			return
		}
		ms := int64(ra) * 1000
		t.shed(ms+rand.Int64N(ms+1), r.Cursor)
	default:
		t.shed(r.Retry.Milliseconds(), r.Cursor)
	}
}

// shed answers 200 with a `retry:` of retryMillis and closes; a non-empty
// id goes out as the block's id:, which the client's retry sends back as
// Last-Event-ID.
func (t *sseTransport) shed(retryMillis int64, id string) {
	h := t.w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	t.c.Status(http.StatusOK)
	if id != "" {
		_, _ = fmt.Fprintf(t.w, "retry: %d\nid: %s\n\n", retryMillis, id)
	} else {
		_, _ = fmt.Fprintf(t.w, "retry: %d\n\n", retryMillis)
	}
	t.w.Flush()
}

// Release returns the write buffer to the pool.
func (t *sseTransport) Release() { t.release() }

// pooledBuf is a transport's write buffer. It is borrowed from the
// server's pool only while there is something to write, so an idle stream
// holds no write buffer.
type pooledBuf struct {
	pool *sync.Pool
	buf  []byte
	bp   *[]byte
}

// grab borrows a write buffer if the stream holds none.
func (b *pooledBuf) grab() {
	if b.bp == nil {
		b.bp = b.pool.Get().(*[]byte)
		b.buf = (*b.bp)[:0]
	}
}

// release returns the write buffer to the pool (oversized ones are dropped).
func (b *pooledBuf) release() {
	if b.bp == nil {
		return
	}
	if cap(b.buf) <= 64<<10 {
		*b.bp = b.buf[:0]
		b.pool.Put(b.bp)
	}
	b.bp, b.buf = nil, nil
}

func (t *sseTransport) Buffered() int { return len(t.buf) }

// Delivery frames a live event from its pre-encoded body. A stream whose
// cursor holds only the event's stream and no session writes the id every
// such subscriber writes, encoded once per fan-out (hub.Delivery.SoleID).
func (t *sseTransport) Delivery(cur *push.Cursor, d *hub.Delivery) {
	t.grab()
	t.buf = append(t.buf, "id: "...)
	if cur.Len() == 1 && cur.Session() == 0 {
		t.buf = append(t.buf, d.SoleID(cur.AppendEncode)...)
	} else {
		t.buf = cur.AppendEncode(t.buf)
	}
	t.buf = append(t.buf, '\n')
	t.buf = append(t.buf, d.Body...)
	t.buf = append(t.buf, '\n')
}

// Event frames an event read from history.
func (t *sseTransport) Event(cur *push.Cursor, e *push.Event) {
	t.grab()
	t.buf = append(t.buf, "id: "...)
	t.buf = cur.AppendEncode(t.buf)
	t.buf = append(t.buf, '\n')
	t.buf = sse.AppendBody(t.buf, e.Type, e.Data)
	t.buf = append(t.buf, '\n')
}

// Control frames a herald.* event.
func (t *sseTransport) Control(cur *push.Cursor, typ string, data []byte) {
	t.grab()
	if cur != nil {
		t.buf = append(t.buf, "id: "...)
		t.buf = cur.AppendEncode(t.buf)
		t.buf = append(t.buf, '\n')
	}
	t.buf = sse.AppendBody(t.buf, typ, data)
	t.buf = append(t.buf, '\n')
}

// KeepAlive frames an empty comment.
func (t *sseTransport) KeepAlive() {
	t.grab()
	t.buf = append(t.buf, ":\n\n"...)
}

// Retry frames a final `retry:`.
func (t *sseTransport) Retry(d time.Duration) {
	t.grab()
	t.buf = append(t.buf, "retry: "...)
	t.buf = strconv.AppendInt(t.buf, d.Milliseconds(), 10)
	t.buf = append(t.buf, "\n\n"...)
}

// Flush writes the buffered frames under a write deadline. Re-arming the
// deadline costs a timer update per write, so it is re-armed only when less
// than half of the write timeout remains: a write that stalls still fails
// within it.
func (t *sseTransport) Flush() error {
	if len(t.buf) == 0 {
		return nil
	}
	if now := time.Now(); t.deadline.Sub(now) < t.timeout/2 {
		t.deadline = now.Add(t.timeout)
		_ = t.rc.SetWriteDeadline(t.deadline)
	}
	_, err := t.w.Write(t.buf)
	if err == nil {
		err = t.rc.Flush()
	}
	t.Release()
	return err
}
