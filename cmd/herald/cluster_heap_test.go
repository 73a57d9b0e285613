package main

import (
	"fmt"
	"net"
	"os"
	"runtime"
	"runtime/pprof"
	"strings"
	"testing"

	"github.com/heraldpush/herald/push/redistest"
)

// streamHeap opens n SSE streams on a node run as shipped (the first one
// alone, to hold the topic) and returns the heap they hold, per stream,
// after runtime.GC: the node's share and this client's raw connections.
// cluster runs the node in a one-node gossip pool. STREAMHEAP_PROFILE=path
// writes the heap profiles of both runs.
func streamHeap(t *testing.T, rs *redistest.Server, cluster bool, n int) float64 {
	m := MustRunMain(t, func(c *Config) {
		c.Redis = rs.URL()
		c.RedisPrefix = "streamheap"
		c.Protection.Admission.ConnectRate = 1e6
		if cluster {
			c.GossipListen = "127.0.0.1:0"
			c.Cluster.RebalanceWindow = 0
		}
	})
	defer func() { _ = m.Close() }()
	addr := strings.TrimPrefix(m.URL(), "http://")
	req := []byte("GET /v1/stream?topic=w HTTP/1.1\r\nHost: " + addr + "\r\nAccept: text/event-stream\r\n\r\n")
	buf := make([]byte, 4096)
	conns := make([]net.Conn, 0, n+1)
	defer func() {
		for _, c := range conns {
			_ = c.Close()
		}
	}()
	open := func() {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
		if _, err := c.Write(req); err != nil {
			t.Fatal(err)
		}
		readHello(t, c, buf)
	}
	open()
	h0 := heapAfterGC()
	for range n {
		open()
	}
	h1 := heapAfterGC()
	if p := os.Getenv("STREAMHEAP_PROFILE"); p != "" { // path prefix: .false and .true (add -memprofilerate 1)
		f, err := os.Create(fmt.Sprintf("%s.%v", p, cluster))
		if err != nil {
			t.Fatal(err)
		}
		if err := pprof.WriteHeapProfile(f); err != nil {
			t.Fatal(err)
		}
		_ = f.Close()
	}
	return (float64(h1) - float64(h0)) / float64(n)
}

func heapAfterGC() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// TestClusterStreamHeap pins what cluster mode adds to the heap of each
// open stream (issue 25: per-stream RSS in cluster mode at most 1.1× the
// single-node figure, and RSS follows the heap): the stream's ownership
// record and served claim in package cluster, and what push/node keeps
// per stream to release the claim. A one-node pool, so that no homed
// record of another node counts.
func TestClusterStreamHeap(t *testing.T) {
	if testing.Short() {
		t.Skip("opens 2×1,500 streams")
	}
	rs := redistest.StartServer(t)
	const n = 1500
	streamHeap(t, rs, false, n) // warm-up: the runtime keeps the goroutines (g) the first n streams create
	single := streamHeap(t, rs, false, n)
	clustered := streamHeap(t, rs, true, n)
	extra := clustered - single
	t.Logf("heap per stream: single node %.0f B, one-node pool %.0f B (+%.0f B, %.3f×)", single, clustered, extra, clustered/single)
	const budget = 120
	if extra > budget {
		t.Errorf("cluster mode adds %.0f B of heap per stream, budget %d B", extra, budget)
	}
}
