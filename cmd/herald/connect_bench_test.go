package main

import (
	"bytes"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/heraldpush/herald/push/hub"
	"github.com/heraldpush/herald/push/redistest"
)

// BenchmarkConnectSSE pins the cost of one SSE connect on a node run as
// shipped (Redis store, protection layers, telemetry, gin routing): each op
// dials the node, sends GET /v1/stream?topic=w, reads the answer up to the
// end of the herald.hello and hangs up. A first stream holds the topic, so
// every measured connect is the common fresh connect of issue 20 item 4
// (deploy/local/bench.sh default:connect2k): hub heads, no store call.
// allocs/op counts the whole process (node and this raw client, whose own
// share is a few allocations). The connect rate limit is raised so that a
// loop faster than 2,000/s is not shed; the check itself is still made.
// "fanout" holds more than hub.PacedFanOut streams on the topic, as
// connect2k's second thousand does: those connects also grow their live
// stack (ADR 0011). "paced" opens one connect per millisecond, connect2k's
// rate: between connects the node is idle, so cpu-ns/op also carries what
// the node spends per millisecond when it has nothing to do (timers,
// probes, scheduler wake-ups), as the system figure does; the loop's own
// ticker adds the same to every build.
func BenchmarkConnectSSE(b *testing.B) {
	rs := redistest.StartServer(b)
	m := MustRunMain(b, func(c *Config) {
		c.Redis = rs.URL()
		c.RedisPrefix = "connectbench"
		c.Protection.Admission.ConnectRate = 1e6
	})
	addr := strings.TrimPrefix(m.URL(), "http://")
	req := []byte("GET /v1/stream?topic=w HTTP/1.1\r\nHost: " + addr + "\r\nAccept: text/event-stream\r\n\r\n")
	buf := make([]byte, 4096)
	hold := func(b *testing.B) net.Conn {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := c.Write(req); err != nil {
			b.Fatal(err)
		}
		readHello(b, c, buf)
		return c
	}
	connect := func(b *testing.B) {
		b.ReportAllocs()
		cpu0 := processCPU()
		for b.Loop() {
			c := hold(b)
			c.Close()
		}
		b.ReportMetric(float64((processCPU()-cpu0).Nanoseconds())/float64(b.N), "cpu-ns/op")
	}
	first := hold(b)
	defer first.Close()
	b.Run("fresh", connect)
	b.Run("paced", func(b *testing.B) {
		b.ReportAllocs()
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		cpu0 := processCPU()
		for b.Loop() {
			<-tick.C
			c := hold(b)
			c.Close()
		}
		b.ReportMetric(float64((processCPU()-cpu0).Nanoseconds())/float64(b.N), "cpu-ns/op")
	})
	b.Run("fanout", func(b *testing.B) {
		held := make([]net.Conn, 0, hub.PacedFanOut+1)
		defer func() {
			for _, c := range held {
				c.Close()
			}
		}()
		for range hub.PacedFanOut + 1 {
			held = append(held, hold(b))
		}
		connect(b)
	})
}

// processCPU is the CPU time this process has used (user and system): the
// node's and the client's, without the wall-clock waits of a loaded machine.
func processCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// readHello reads a stream's answer up to the blank line that ends its
// herald.hello.
func readHello(b testing.TB, c net.Conn, buf []byte) {
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	n := 0
	for {
		k, err := c.Read(buf[n:])
		if err != nil {
			b.Fatalf("reading the hello: %v (got %q)", err, buf[:n])
		}
		n += k
		if i := bytes.Index(buf[:n], []byte("herald.hello")); i >= 0 && bytes.Contains(buf[i:n], []byte("\n\n")) {
			return
		}
		if n == len(buf) {
			b.Fatalf("no hello in %q", buf[:n])
		}
	}
}
