package main

import (
	"bytes"
	"fmt"
	"net"
	"net/http"
	"os"
	"runtime"
	"runtime/pprof"
	"strings"
	"testing"
	"time"

	"github.com/heraldpush/herald/push/redistest"
)

// topicMemory is the memory a node holds per stream in topics10k's shape
// (docs/benchmarks.md, issue 20 item 4): n SSE streams, each alone on its
// own topic, each sent events events through the publish API and having
// read them; measured after runtime.GC, as the growth from before the
// streams opened.
type topicMemory struct {
	heap, stack float64 // bytes per stream
}

func measureTopicMemory(t *testing.T, rs *redistest.Server, prefix string, n, events int) topicMemory {
	m := MustRunMain(t, func(c *Config) {
		c.Redis = rs.URL()
		c.RedisPrefix = prefix
		c.Protection.Admission.ConnectRate = 1e6
		c.Protection.Ingress.PublishQPS = 0
		c.Protection.Ingress.TopicQPS = 0
	})
	defer func() { _ = m.Close() }()
	addr := strings.TrimPrefix(m.URL(), "http://")
	buf := make([]byte, 4096)
	conns := make([]net.Conn, 0, n+1)
	defer func() {
		for _, c := range conns {
			_ = c.Close()
		}
	}()
	pub := &http.Client{Timeout: 10 * time.Second}
	publish := func(topic string, i int) {
		body := fmt.Sprintf(`{"data":"event %d of %s, padded to sixty-four bytes of data......"}`, i, topic)
		resp, err := pub.Post(m.URL()+"/v1/topics/"+topic+"/events", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusCreated {
			t.Fatalf("publish to %s: %s", topic, resp.Status)
		}
	}
	// One stream and one event first: the publish client's connection and
	// the node's lazily built parts are in the baseline.
	open := func(topic string) net.Conn {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
		req := "GET /v1/stream?topic=" + topic + " HTTP/1.1\r\nHost: " + addr + "\r\nAccept: text/event-stream\r\n\r\n"
		if _, err := c.Write([]byte(req)); err != nil {
			t.Fatal(err)
		}
		readHello(t, c, buf)
		return c
	}
	readEvent := func(c net.Conn, i int) {
		want := []byte(fmt.Sprintf("event %d of", i))
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		k := 0
		for !bytes.Contains(buf[:k], want) {
			r, err := c.Read(buf[k:])
			if err != nil {
				t.Fatalf("reading event %d: %v (got %q)", i, err, buf[:k])
			}
			k += r
			if k == len(buf) {
				k = copy(buf, buf[k-len(want):k])
			}
		}
	}
	c0 := open("warm")
	publish("warm", 0)
	readEvent(c0, 0)
	streams := make([]net.Conn, n)
	h0, s0 := memAfterGC()
	for i := range n {
		streams[i] = open(fmt.Sprintf("t%d", i))
	}
	for e := range events {
		for i := range n {
			publish(fmt.Sprintf("t%d", i), e)
		}
		for i := range n {
			readEvent(streams[i], e)
		}
	}
	h1, s1 := memAfterGC()
	if p := os.Getenv("TOPICMEM_PROFILE"); p != "" { // add -test.memprofilerate 1
		f, err := os.Create(p)
		if err != nil {
			t.Fatal(err)
		}
		if err := pprof.WriteHeapProfile(f); err != nil {
			t.Fatal(err)
		}
		_ = f.Close()
	}
	return topicMemory{
		heap:  (float64(h1) - float64(h0)) / float64(n),
		stack: (float64(s1) - float64(s0)) / float64(n),
	}
}

func memAfterGC() (heap, stack uint64) {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc, ms.StackInuse
}

// TestTopicStreamMemory pins what a node keeps of each event it announced
// to a stream alone on its topic (topics10k's shape, issue 20 item 4: RSS
// growth at most 1.2× the floor's, which keeps nothing of an event once
// written): the hub's recent-events cache (layer 4) keeps the last events
// of every watched topic, and with the heap running at its GC goal every
// byte of live heap costs two of RSS. Keeping the announced *push.Event
// kept its whole Pub/Sub payload too, 358–395 B an event here; a
// compact cache entry 224–225 B (docs/benchmarks.md, "Issue 20 item 4 memory,
// session 14").
func TestTopicStreamMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("opens 4×1,000 streams")
	}
	if raceEnabled {
		t.Skip("memory pins do not hold under -race")
	}
	rs := redistest.StartServer(t)
	const n, events = 1000, 8
	measureTopicMemory(t, rs, "topicmem-warm", n, 1) // warm-up: the runtime keeps the goroutines (g) it made
	none := measureTopicMemory(t, rs, "topicmem-0", n, 0)
	some := measureTopicMemory(t, rs, "topicmem-4", n, events)
	perEvent := (some.heap - none.heap) / events
	t.Logf("per stream alone on its topic: heap %.0f B, goroutine stacks %.0f B; after %d events read: heap %.0f B (%.0f B an event), stacks %.0f B",
		none.heap, none.stack, events, some.heap, perEvent, some.stack)
	const budget = 300
	if perEvent > budget {
		t.Errorf("the node keeps %.0f B of heap per event announced to a topic, budget %d B", perEvent, budget)
	}
}
