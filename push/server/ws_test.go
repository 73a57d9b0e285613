package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/heraldpush/herald/push"
	"github.com/heraldpush/herald/push/server"
	"github.com/heraldpush/herald/push/wire"
)

// wsClient is a raw WebSocket to /v1/ws, for the frame contract itself.
type wsClient struct {
	t    *testing.T
	conn *websocket.Conn
}

func dialWS(t *testing.T, n *testNode, query string, h http.Header) *wsClient {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(n.URL, "http")+"/v1/ws?"+query, &websocket.DialOptions{HTTPHeader: h})
	if err != nil {
		t.Fatal(err)
	}
	conn.SetReadLimit(1 << 20)
	t.Cleanup(func() { _ = conn.CloseNow() })
	return &wsClient{t: t, conn: conn}
}

// next reads the next frame, failing after wait.
func (c *wsClient) next() wire.Frame {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	f, err := readFrame(ctx, c.conn)
	if err != nil {
		c.t.Fatalf("read frame: %v", err)
	}
	return f
}

// closed reads until the socket closes and returns the close status and
// reason.
func (c *wsClient) closed() (websocket.StatusCode, string) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	for {
		if _, _, err := c.conn.Read(ctx); err != nil {
			var ce websocket.CloseError
			if ok := asClose(err, &ce); ok {
				return ce.Code, ce.Reason
			}
			c.t.Fatalf("socket ended without a close frame: %v", err)
		}
	}
}

func asClose(err error, ce *websocket.CloseError) bool {
	code := websocket.CloseStatus(err)
	if code == -1 {
		return false
	}
	*ce = websocket.CloseError{Code: code}
	if i := strings.Index(err.Error(), "reason"); i >= 0 {
		ce.Reason = err.Error()
	}
	return true
}

func (c *wsClient) send(v any) {
	c.t.Helper()
	b, _ := json.Marshal(v)
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := c.conn.Write(ctx, websocket.MessageText, b); err != nil {
		c.t.Fatal(err)
	}
}

// The frame contract: one JSON text message per event, {id,event,topic,data},
// data exactly what an SSE client receives (multi-line kept), id the SSE
// cursor; control events in the same shape.
func TestWSFramesMatchSSE(t *testing.T) {
	n := startNode(t, newMemStore(t, push.Retention{}), nil)
	ws := dialWS(t, n, "topic=a&topic=b", nil)
	hello := ws.next()
	var hd helloEvent
	decodeJSON(t, hello.Data, &hd)
	if hello.Event != push.EventHello || hello.ID == "" || hd.Cursor != hello.ID || hello.Topic != "" {
		t.Fatalf("hello frame %+v", hello)
	}
	n.transport = "sse"
	sse := n.openStream(t, []string{"a", "b"}, "", nil) // its own session: its ids differ in that only
	sse.next(wait)                                      // hello
	data := "line one\nline two\r\nline three\rend \"quoted\" é"
	n.publish("a", "price", data)
	f, e := ws.next(), sse.next(wait)
	if f.Event != "price" || f.Topic != "a" || f.Data != e.Data {
		t.Fatalf("ws frame %+v, sse event %+v: want the same type and data", f, e)
	}
	if wo, so := offsets(t, f.ID, []string{"a", "b"}), offsets(t, e.ID, []string{"a", "b"}); fmt.Sprint(wo) != fmt.Sprint(so) {
		t.Fatalf("ws id names %v, sse id %v", wo, so)
	}
	if f.Data != "line one\nline two\nline three\nend \"quoted\" é" {
		t.Fatalf("data %q", f.Data)
	}
}

// A cursor moves between transports: an SSE id resumes a WebSocket and a
// WebSocket id resumes SSE, with nothing lost or repeated.
func TestWSCursorMovesBetweenTransports(t *testing.T) {
	n := startNode(t, newMemStore(t, push.Retention{}), nil)
	n.transport = "sse"
	s := n.openStream(t, []string{"a"}, "", nil)
	s.next(wait)
	n.publish("a", "", "1")
	id := s.next(wait).ID
	s.Close()
	n.publish("a", "", "2")
	n.publish("a", "", "3")
	ws := dialWS(t, n, "topic=a&last_event_id="+url.QueryEscape(id), nil)
	if h := ws.next(); h.Event != push.EventHello || h.ID != id {
		t.Fatalf("ws resume hello %+v, want id %s", h, id)
	}
	var wsID string
	for _, want := range []string{"2", "3"} {
		f := ws.next()
		if f.Data != want {
			t.Fatalf("ws replay %q, want %q", f.Data, want)
		}
		wsID = f.ID
	}
	_ = ws.conn.CloseNow()
	n.publish("a", "", "4")
	back := n.openStream(t, []string{"a"}, wsID, nil)
	back.next(wait)
	if ev := back.next(wait); ev.Data != "4" {
		t.Fatalf("sse resume from a ws id: %q, want 4", ev.Data)
	}
	back.noEvent(200 * time.Millisecond)
}

// Publish on the socket: same validation, grants and idempotency as POST,
// answered by herald.ack (or herald.error) with the client's ref.
func TestWSPublishAck(t *testing.T) {
	n := startNode(t, newMemStore(t, push.Retention{}), nil)
	ws := dialWS(t, n, "topic=a", nil)
	ws.next()
	pub := map[string]any{"type": "publish", "ref": "r1", "topic": "a", "event": "e", "data": map[string]int{"x": 1}, "idempotency_key": "k1"}
	ws.send(pub)
	var frames []wire.Frame
	for len(frames) < 2 {
		frames = append(frames, ws.next())
	}
	var ack struct {
		Ref    string        `json:"ref"`
		Result publishResult `json:"result"`
	}
	var ev wire.Frame
	for _, f := range frames {
		switch f.Event {
		case wire.EventAck:
			decodeJSON(t, f.Data, &ack)
		case "e":
			ev = f
		}
	}
	if ack.Ref != "r1" || ack.Result.Offset != 1 || ack.Result.Duplicate {
		t.Fatalf("ack %+v (frames %+v)", ack, frames)
	}
	if ev.Data != `{"x":1}` || ev.Topic != "a" {
		t.Fatalf("event %+v", ev)
	}
	ws.send(pub) // the same key: a duplicate, not a second event
	f := ws.next()
	decodeJSON(t, f.Data, &ack)
	if f.Event != wire.EventAck || !ack.Result.Duplicate || ack.Result.Offset != 1 {
		t.Fatalf("retry with the same key: %+v", f)
	}
	ws.send(map[string]any{"type": "publish", "ref": "r2", "topic": "Bad Topic", "data": 1})
	f = ws.next()
	var e struct {
		Ref   string                `json:"ref"`
		Error struct{ Code string } `json:"error"`
	}
	decodeJSON(t, f.Data, &e)
	if f.Event != wire.EventError || e.Ref != "r2" || e.Error.Code != "invalid_topic" {
		t.Fatalf("bad topic: %+v", f)
	}
	ws.send(map[string]any{"type": "nope"})
	if f := ws.next(); f.Event != wire.EventError {
		t.Fatalf("unknown type: %+v", f)
	}
}

// Subscribe adds a topic at the live head (or at a cursor the client
// gives), unsubscribe removes one; the stream continues with no loss or
// repeat on the topics it keeps, and a herald.hello names the new set.
func TestWSSubscribeUnsubscribe(t *testing.T) {
	n := startNode(t, newMemStore(t, push.Retention{}), nil)
	n.publish("b", "", "b-old")
	ws := dialWS(t, n, "topic=a", nil)
	ws.next()
	n.publish("a", "", "a1")
	if f := ws.next(); f.Data != "a1" {
		t.Fatalf("got %+v", f)
	}
	ws.send(map[string]any{"type": "subscribe", "ref": "s1", "topics": []string{"b"}})
	h := ws.next()
	var hd helloEvent
	decodeJSON(t, h.Data, &hd)
	if h.Event != push.EventHello || strings.Join(hd.Topics, ",") != "a,b" {
		t.Fatalf("after subscribe: %+v", h)
	}
	n.publish("a", "", "a2")
	n.publish("b", "", "b1")
	got := map[string]bool{}
	for range 2 {
		got[ws.next().Data] = true
	}
	if !got["a2"] || !got["b1"] {
		t.Fatalf("after subscribe got %v, want a2 and b1 (b starts at the head: not b-old)", got)
	}
	ws.send(map[string]any{"type": "unsubscribe", "topics": []string{"a"}})
	if h := ws.next(); h.Event != push.EventHello {
		t.Fatalf("after unsubscribe: %+v", h)
	}
	n.publish("a", "", "a3")
	n.publish("b", "", "b2")
	if f := ws.next(); f.Data != "b2" {
		t.Fatalf("after unsubscribe got %+v, want b2 only", f)
	}
	// A new topic from a cursor the client kept for it.
	n.transport = "sse"
	c := n.openStream(t, []string{"c"}, "", nil)
	c.next(wait)
	n.publish("c", "", "c1")
	cid := c.next(wait).ID
	c.Close()
	n.publish("c", "", "c2")
	ws.send(map[string]any{"type": "subscribe", "topics": []string{"c"}, "cursor": cid})
	if h := ws.next(); h.Event != push.EventHello {
		t.Fatalf("subscribe with cursor: %+v", h)
	}
	if f := ws.next(); f.Data != "c2" {
		t.Fatalf("subscribe with cursor replayed %+v, want c2", f)
	}
	ws.send(map[string]any{"type": "unsubscribe", "ref": "u", "topics": []string{"b", "c"}})
	if f := ws.next(); f.Event != wire.EventError {
		t.Fatalf("unsubscribing every topic: %+v, want herald.error", f)
	}
}

// Browsers cannot set headers on a WebSocket: a token goes in the
// access_token query parameter or in a first auth message, within
// WSAuthTimeout; without one the socket closes 4401 or 4408.
func TestWSAuthentication(t *testing.T) {
	n, secretFile, _ := authNode(t)
	tok := mint(t, secretFile, []string{"orders.*"}, nil, time.Hour)
	ws := dialWS(t, n, "topic=orders.eu&access_token="+url.QueryEscape(tok), nil)
	if f := ws.next(); f.Event != push.EventHello {
		t.Fatalf("query token: %+v", f)
	}
	ws = dialWS(t, n, "topic=orders.eu", nil)
	ws.send(map[string]any{"type": "auth", "token": tok})
	if f := ws.next(); f.Event != push.EventHello {
		t.Fatalf("first-message token: %+v", f)
	}
	ws = dialWS(t, n, "topic=orders.eu", nil)
	ws.send(map[string]any{"type": "auth", "token": "nope"})
	if f := ws.next(); f.Event != wire.EventError {
		t.Fatalf("bad token: %+v", f)
	}
	if code, _ := ws.closed(); code != 4401 {
		t.Fatalf("bad token closed %d, want 4401", code)
	}
	ws = dialWS(t, n, "topic=secret&access_token="+url.QueryEscape(tok), nil)
	ws.next()
	if code, _ := ws.closed(); code != 4403 {
		t.Fatalf("topic not granted: closed %d, want 4403", code)
	}
	ws = dialWS(t, n, "topic=BAD%20TOPIC", nil)
	if f := ws.next(); f.Event != wire.EventError {
		t.Fatalf("bad topic: %+v", f)
	}
	if code, _ := ws.closed(); code != 4400 {
		t.Fatalf("bad topic closed %d, want 4400", code)
	}
}

// A socket that never authenticates is closed 4408 after WSAuthTimeout.
func TestWSAuthTimeout(t *testing.T) {
	if testing.Short() {
		t.Skip("waits WSAuthTimeout")
	}
	n, _, _ := authNode(t)
	ws := dialWS(t, n, "topic=orders.eu", nil)
	start := time.Now()
	if code, _ := ws.closed(); code != 4408 {
		t.Fatalf("closed %d, want 4408", code)
	}
	if d := time.Since(start); d < 9*time.Second {
		t.Fatalf("closed after %s, before the auth timeout", d)
	}
}

// Keep-alives are pings: a client that reads (and so answers them) stays,
// one that does not answer within a heartbeat interval is cut off as slow
// (close 4004) and may resume from its cursor.
func TestWSKeepAlivePings(t *testing.T) {
	n := startNode(t, newMemStore(t, push.Retention{}), func(c *server.Config) {
		c.Stream.Heartbeat, c.Stream.WriteTimeout = 200*time.Millisecond, 300*time.Millisecond
	})
	reader := dialWS(t, n, "topic=a", nil)
	reader.next()
	ctx, cancel := context.WithCancel(context.Background())
	readErr := make(chan error, 1)
	go func() {
		_, _, err := reader.conn.Read(ctx) // answers pings while it waits
		readErr <- err
	}()
	mute := dialWS(t, n, "topic=a", nil)
	mute.next()
	// mute reads nothing, so its pings go unanswered, until the server
	// says it is cut off: the Stats counter, then the close frame.
	waitFor(t, 5*time.Second, "the mute client cut off as slow", func() bool { return n.Srv.Stats().SlowEnded == 1 })
	if code, _ := mute.closed(); code != 4004 {
		t.Fatalf("a client that answers no ping closed with %d, want 4004 (slow)", code)
	}
	select {
	case err := <-readErr:
		t.Fatalf("the reading client was cut off: %v", err)
	default:
	}
	n.publish("a", "", "still-here")
	select {
	case err := <-readErr:
		if err != nil {
			t.Fatalf("the reading client: %v", err)
		}
	case <-time.After(wait):
		t.Fatal("the reading client got nothing")
	}
	cancel()
}

// A subscribe carrying a cursor whose epoch the topic's history no longer
// has (Redis lost data, ADR 0024) is answered as a reconnect with that
// cursor is on either transport: the new herald.hello, a herald.reset
// naming what no longer exists, then the new lineage replayed. It is not
// refused: the client could not tell what it lost otherwise.
func TestWSSubscribeCursorOfAChangedEpochResets(t *testing.T) {
	eachStore(t, func(t *testing.T, newStore storeFactory) {
		last := lostHistoryCursor(t, newStore, []string{"c"}, "c x1", "c x2", "c x3")
		// Another store: same topic, another epoch (the history was lost).
		n := startNode(t, newStore(t, push.Retention{}), nil)
		n.publish("c", "", "new-c")
		ws := dialWS(t, n, "topic=a", nil)
		ws.next()
		ws.send(map[string]any{"type": "subscribe", "ref": "s1", "topics": []string{"c"}, "cursor": last})
		h := ws.next()
		var hd helloEvent
		decodeJSON(t, h.Data, &hd)
		if h.Event != push.EventHello || strings.Join(hd.Topics, ",") != "a,c" {
			t.Fatalf("after subscribe: %+v, want herald.hello for a,c", h)
		}
		reset := ws.next()
		var rd resetEvent
		decodeJSON(t, reset.Data, &rd)
		if reset.Event != push.EventReset || len(rd.Streams) != 1 {
			t.Fatalf("after hello: %+v, want one herald.reset for c", reset)
		}
		if sr := rd.Streams[0]; sr.Topic != "c" || sr.Reason != push.ResetEpochChanged || sr.LostFrom != 4 || sr.ContinueFrom != 1 {
			t.Fatalf("reset %+v, want c epoch_changed lost from 4, continue from 1", sr)
		}
		if f := ws.next(); f.Data != "new-c" || f.Topic != "c" {
			t.Fatalf("after the reset: %+v, want the new epoch's new-c replayed", f)
		}
		n.publish("a", "", "a1")
		n.publish("c", "", "c2")
		for _, want := range []string{"a1", "c2"} {
			if f := ws.next(); f.Data != want {
				t.Fatalf("live: %+v, want %s", f, want)
			}
		}
	})
}
