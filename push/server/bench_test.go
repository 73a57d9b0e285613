package server_test

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/heraldpush/herald/push"
	"github.com/heraldpush/herald/push/sse"
)

// BenchmarkFrameEncode measures the per-delivery work a stream does on top
// of the hub: advance the cursor, re-encode it as the event's id, frame
// "id: <cursor>\n" + body + "\n" into the connection's buffer. It mirrors
// conn.appendFrame (live: the body is the hub's shared encoding) and
// conn.appendFrameEvent (replay: the body is encoded per frame from a
// stored event) with the exported push.Cursor and sse.AppendBody.
// Deliveries rotate over the topics, as on a multi-topic stream; the buffer
// is reset at the handler's 32 KiB flush threshold, as a flush would.
func benchmarkFrameEncode(b *testing.B, topics int, replay bool) {
	names := make([]string, topics)
	for i := range names {
		names[i] = fmt.Sprintf("orders.region-%d", i)
	}
	cur, err := push.NewCursor(names, []string{"local"})
	if err != nil {
		b.Fatal(err)
	}
	const epoch = "3f2a9c1d7e5b4a60"
	offsets := make([]uint64, topics)
	for i := range offsets {
		offsets[i] = 1<<20 + uint64(i)*7919 // realistic varint widths
		cur.SetAt(i, push.Position{Epoch: epoch, Offset: offsets[i]})
	}
	ev := push.Event{Topic: names[0], Origin: "local", Epoch: epoch, Type: "price",
		Data: []byte(`{"sym":"ABC","price":123.45,"qty":100,"ts":"2026-01-02T03:04:05.678Z"}`)}
	shared := sse.AppendBody(nil, ev.Type, ev.Data) // the hub encodes once per event
	buf := make([]byte, 0, 64<<10)
	frames := 0
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		slot := i % topics
		offsets[slot]++
		cur.SetAt(slot, push.Position{Epoch: epoch, Offset: offsets[slot]})
		if len(buf) >= 32<<10 {
			buf = buf[:0]
		}
		start := len(buf)
		buf = append(buf, "id: "...)
		buf = cur.AppendEncode(buf)
		buf = append(buf, '\n')
		if replay {
			buf = sse.AppendBody(buf, ev.Type, ev.Data)
		} else {
			buf = append(buf, shared...)
		}
		buf = append(buf, '\n')
		frames += len(buf) - start
	}
	b.StopTimer()
	b.ReportMetric(float64(frames)/float64(b.N), "B/frame")
}

func BenchmarkFrameEncode(b *testing.B) {
	for _, path := range []struct {
		name   string
		replay bool
	}{{"live", false}, {"replay", true}} {
		for _, topics := range []int{1, 4} {
			b.Run(fmt.Sprintf("path=%s/topics=%d", path.name, topics), func(b *testing.B) { benchmarkFrameEncode(b, topics, path.replay) })
		}
	}
}

// BenchmarkPublishHandler is one POST /v1/topics/{topic}/events through the
// node's whole HTTP handler (routing, auth in dev mode, protection, JSON,
// append to the in-memory store, the response), without a network: its
// allocations are the publish path's own. Topics rotate over 1,000 so the
// per-topic state is not one hot entry.
func BenchmarkPublishHandler(b *testing.B) {
	n := startNode(b, newMemStore(b, push.Retention{MaxLen: 100}), nil)
	h := n.Srv.Handler()
	body := []byte(`{"event":"price","data":"{\"sym\":\"ABC\",\"price\":123.45}"}`)
	paths := make([]string, 1000)
	for i := range paths {
		paths[i] = fmt.Sprintf("/v1/topics/bench-%d/events", i)
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		req := httptest.NewRequest(http.MethodPost, paths[i%len(paths)], bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusCreated {
			b.Fatalf("publish: %d %s", rec.Code, rec.Body)
		}
	}
}

// BenchmarkBatchHandler is one POST /v1/events of `items` events through
// the node's whole HTTP handler, as BenchmarkPublishHandler: decoding,
// grants, grouping by topic (10 topics per batch), appends and the results.
func BenchmarkBatchHandler(b *testing.B) {
	for _, items := range []int{10, 100} {
		b.Run(fmt.Sprintf("items=%d", items), func(b *testing.B) { benchmarkBatchHandler(b, items) })
	}
}

func benchmarkBatchHandler(b *testing.B, items int) {
	n := startNode(b, newMemStore(b, push.Retention{MaxLen: 100}), nil)
	h := n.Srv.Handler()
	var body bytes.Buffer
	body.WriteString(`{"events":[`)
	for i := range items {
		if i > 0 {
			body.WriteByte(',')
		}
		fmt.Fprintf(&body, `{"topic":"bench-%d","event":"price","data":{"sym":"ABC","price":123.45,"seq":%d}}`, i%10, i)
	}
	body.WriteString(`]}`)
	raw := body.Bytes()
	b.ReportAllocs()
	b.SetBytes(int64(len(raw)))
	for b.Loop() {
		req := httptest.NewRequest(http.MethodPost, "/v1/events", bytes.NewReader(raw))
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			b.Fatalf("batch: %d %s", rec.Code, rec.Body)
		}
	}
}

// BenchmarkPublishDeliver is one publish through the whole path on real
// parts: POST over loopback HTTP (keep-alive) → handler → append to a
// redis-server on loopback → the Pub/Sub announcement decoded → hub
// dispatch → SSE frame written → read by the stream's decoder; the next
// publish waits for the delivery. Its body is what `herald bench` sends (a
// plain JSON string). allocs/op are the process's: client and node, both
// sides of HTTP and SSE. Topics rotate over 16, each with its own stream.
func BenchmarkPublishDeliver(b *testing.B) {
	n := startNode(b, newRedisStore(b, push.Retention{MaxLen: 1000}), nil)
	const topics = 16
	streams := make([]*stream, topics)
	bodies := make([][]byte, topics)
	paths := make([]string, topics)
	for i := range streams {
		topic := fmt.Sprintf("bench-%d", i)
		streams[i] = n.openStream(b, []string{topic}, "", nil)
		if ev := streams[i].next(5 * time.Second); ev.Type != push.EventHello {
			b.Fatalf("first event %q, want hello", ev.Type)
		}
		paths[i] = n.URL + "/v1/topics/" + topic + "/events"
		bodies[i] = []byte(`{"data":"1765101234567890123 ` + strings.Repeat("x", 44) + `"}`)
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4}, Timeout: 10 * time.Second}
	defer client.CloseIdleConnections()
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		k := i % topics
		resp, err := client.Post(paths[k], "application/json", bytes.NewReader(bodies[k]))
		if err != nil {
			b.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusCreated {
			b.Fatalf("publish: %d", resp.StatusCode)
		}
		if ev := streams[k].next(10 * time.Second); ev.Data == "" {
			b.Fatal("delivery without data")
		}
	}
}
