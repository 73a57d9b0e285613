package server_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/heraldpush/herald/push/sse"
	"github.com/heraldpush/herald/push/wire"
)

// forTransports runs f once per stream transport, as subtests "sse" and
// "ws": the transport is a parameter of the test. Nodes a subtest starts
// serve their streams on its transport (transportOf).
func forTransports(t *testing.T, f func(t *testing.T)) {
	t.Helper()
	for _, tr := range []string{"sse", "ws"} {
		t.Run(tr, f)
	}
}

// transportOf is the transport of the subtest t runs in (see forTransports):
// "ws" under a "ws" subtest, else "sse".
func transportOf(t testing.TB) string {
	if strings.Contains(t.Name()+"/", "/ws/") {
		return "ws"
	}
	return "sse"
}

// tryWS opens GET /v1/ws like tryStreamWith opens /v1/stream. A connect
// the server refuses (a herald.error or herald.moved, then a close) is
// returned as the status its close code names (4000 + HTTP status; 4503
// for every "retry later"), with the frame's data as body.
func (n *testNode) tryWS(topics []string, lastID string, extra url.Values, header http.Header) (*stream, int, string) {
	q := url.Values{}
	for k, v := range extra {
		q[k] = v
	}
	q["topic"] = topics
	h := http.Header{}
	for k, v := range header {
		h[k] = v
	}
	if lastID != "" {
		h.Set("Last-Event-ID", lastID)
	}
	ctx, cancel := context.WithCancel(context.Background())
	dctx, dcancel := context.WithTimeout(ctx, 10*time.Second)
	conn, resp, err := websocket.Dial(dctx, "ws"+strings.TrimPrefix(n.URL, "http")+"/v1/ws?"+q.Encode(), &websocket.DialOptions{HTTPHeader: h})
	dcancel()
	if err != nil {
		cancel()
		if resp != nil {
			return nil, resp.StatusCode, err.Error()
		}
		n.t.Fatal(err)
	}
	conn.SetReadLimit(1 << 20)
	s := &stream{t: n.t, ws: conn, cancel: cancel, events: make(chan sse.Event, 100000), errc: make(chan error, 1)}
	// The first frame tells a refusal from a stream.
	first, err := readFrame(ctx, conn)
	if err != nil {
		cancel()
		return nil, closeStatus(err), err.Error()
	}
	if first.Event == wire.EventError || first.Event == "herald.moved" {
		_, err := readFrame(ctx, conn)
		cancel()
		_ = conn.CloseNow()
		if h.Get("Herald-Client") != "" || closeStatus(err) != http.StatusServiceUnavailable {
			return nil, closeStatus(err), first.Data
		}
		// A browser's "come back later" on SSE is a 200 that ends at once
		// with a retry: the same here, the retry in the close reason.
		s.closed, s.shedID = websocket.CloseStatus(err), first.ID
		var ce websocket.CloseError
		if errors.As(err, &ce) {
			s.closeReason = ce.Reason
		}
		s.errc <- err
		close(s.events)
		return s, http.StatusOK, ""
	}
	go func() {
		id := ""
		f := first
		for {
			if f.ID != "" {
				id = f.ID // as an SSE client keeps the last id
			}
			s.events <- sse.Event{ID: id, Type: f.Event, Data: f.Data}
			var err error
			if f, err = readFrame(ctx, conn); err != nil {
				s.closed = websocket.CloseStatus(err)
				var ce websocket.CloseError
				if errors.As(err, &ce) {
					s.closeReason = ce.Reason
				}
				s.errc <- err
				close(s.events)
				return
			}
		}
	}()
	return s, http.StatusOK, ""
}

// closeStatus maps a close to the HTTP status it stands for.
func closeStatus(err error) int {
	code := websocket.CloseStatus(err)
	switch {
	case code == 4307:
		return http.StatusTemporaryRedirect
	case code >= 4400 && code < 4600:
		return int(code) - 4000
	}
	return 0
}

func readFrame(ctx context.Context, c *websocket.Conn) (wire.Frame, error) {
	typ, b, err := c.Read(ctx)
	if err != nil {
		return wire.Frame{}, err
	}
	if typ != websocket.MessageText {
		return wire.Frame{}, errors.New("binary frame")
	}
	var f wire.Frame
	d := json.NewDecoder(strings.NewReader(string(b)))
	d.DisallowUnknownFields()
	if err := d.Decode(&f); err != nil {
		return wire.Frame{}, err
	}
	return f, nil
}

// finalRetry is the reconnection delay the server gave as the stream ended:
// SSE's last retry: field, the WebSocket close reason's retry_ms. Read it
// after the stream ended.
func (s *stream) finalRetry() (time.Duration, bool) {
	if s.ws == nil {
		return s.dec.Retry()
	}
	var r struct {
		RetryMS int64 `json:"retry_ms"`
	}
	if json.Unmarshal([]byte(s.closeReason), &r) != nil || r.RetryMS == 0 {
		return 0, false
	}
	return time.Duration(r.RetryMS) * time.Millisecond, true
}

// lastID is the last id the stream received (an SSE shed's id:, a
// WebSocket refusal's frame id).
func (s *stream) lastID() string {
	if s.ws == nil {
		return s.dec.LastEventID()
	}
	return s.shedID
}
