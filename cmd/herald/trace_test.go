package main

import (
	"context"
	"testing"
	"time"

	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/heraldpush/herald/cluster/gossiptest"
	"github.com/heraldpush/herald/observability"
	"github.com/heraldpush/herald/push"
	"github.com/heraldpush/herald/push/client"
	"github.com/heraldpush/herald/push/node"
	"github.com/heraldpush/herald/push/redistest"
)

// crash stops an in-process node the way kill -9 does for everyone else:
// its streams drop and it vanishes from gossip without leaving (but its
// spans still end; TestTraceContinuesAcrossKill9 kills a real process).
func crash(m *Main) {
	_ = m.public.Close()
	_ = m.Cluster.Close()
}

// sessionSpan waits for the session span of session on rec: the first
// one the node started, should the client have reconnected to it again.
func sessionSpan(t *testing.T, rec *observability.Recorder, session string) sdktrace.ReadOnlySpan {
	t.Helper()
	var found sdktrace.ReadOnlySpan
	eventually(t, 10*time.Second, "session span of "+session, func() bool {
		for _, s := range rec.EndedNamed(observability.SpanSession) {
			for _, a := range s.Attributes() {
				if string(a.Key) == "herald.session.id" && a.Value.AsString() == session &&
					(found == nil || s.StartTime().Before(found.StartTime())) {
					found = s
				}
			}
		}
		return found != nil
	})
	return found
}

// sdkAcrossLoss runs a Go SDK subscriber on endpoints a then b: it checks
// the first hello comes from node a with a trace, calls lose, checks the
// session resumed on node b and stops the client (or it would reconnect to
// b again, opening a third session span, linked to the second). It returns
// the first hello.
func sdkAcrossLoss(t *testing.T, a, b string, lose func()) push.Hello {
	t.Helper()
	hellos := make(chan push.Hello, 4)
	st := client.Subscribe(client.StreamConfig{Endpoints: []string{a, b}, Topics: []string{"tc"},
		MinBackoff: 10 * time.Millisecond, MaxBackoff: 200 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = st.Run(ctx, func(ev client.Event) error {
			if ev.Type == push.EventHello {
				h, _ := client.ParseHello(ev)
				hellos <- h
			}
			return nil
		})
	}()
	stop := func() { cancel(); <-done }
	defer stop()
	var first push.Hello
	select {
	case first = <-hellos:
	case <-time.After(20 * time.Second):
		t.Fatal("no hello from a")
	}
	if first.Node != "a" || first.Trace == "" {
		t.Fatalf("first hello %+v, want node a with a trace", first)
	}
	lose()
	select {
	case second := <-hellos:
		if second.Node != "b" || second.Session != first.Session {
			t.Fatalf("second hello %+v, want node b, session %s", second, first.Session)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("no reconnect to b")
	}
	return first
}

// linked reports whether s links to the span to.
func linked(s sdktrace.ReadOnlySpan, to trace.SpanContext) bool {
	for _, l := range s.Links() {
		if l.SpanContext.SpanID() == to.SpanID() && l.SpanContext.TraceID() == to.TraceID() {
			return true
		}
	}
	return false
}

// spanOf parses a W3C traceparent.
func spanOf(t *testing.T, traceparent string) trace.SpanContext {
	t.Helper()
	ctx := propagation.TraceContext{}.Extract(context.Background(), propagation.MapCarrier{"traceparent": traceparent})
	sc := trace.SpanContextFromContext(ctx)
	if !sc.IsValid() {
		t.Fatalf("traceparent %q does not parse", traceparent)
	}
	return sc
}

// A client whose node dies resumes on another node, and its new session
// span links to the old one: for the Go SDK (traceparent from the hello)
// and for a browser-style client that only has Last-Event-ID (the session
// id in the cursor, and the gossiped session record's trace).
func TestTraceContinuesAcrossNodeLoss(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster test")
	}
	for _, sdk := range []bool{true, false} {
		name := map[bool]string{true: "sdk", false: "browser"}[sdk]
		t.Run(name, func(t *testing.T) {
			rd := redistest.StartServer(t)
			net := gossiptest.NewNetwork()
			telA, recA, err := observability.NewTestTelemetry(observability.Config{Node: "a"})
			if err != nil {
				t.Fatal(err)
			}
			telB, recB, err := observability.NewTestTelemetry(observability.Config{Node: "b"})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = telA.Shutdown(context.Background()); _ = telB.Shutdown(context.Background()) })
			a := runGossipNodeWith(t, net, "a", rd.URL(), "", telA)
			b := runGossipNodeWith(t, net, "b", rd.URL(), a.Cluster.Local().GossipAddr, telB)
			eventually(t, 20*time.Second, "two members", func() bool { return len(aliveSet(b)) == 2 })

			var session string
			if sdk {
				// Cut gossip first: b cannot learn the session's record, so
				// the link can only come from the traceparent the SDK sends.
				net.Partition([]string{"a"}, []string{"b"})
				session = sdkAcrossLoss(t, a.URL(), b.URL(), func() { crash(a) }).Session
			} else {
				old := openRaw(t, a.URL(), "tc", "")
				p, err := push.ParseCursor(old.hello, []string{"tc"}, []string{"local"})
				if err != nil {
					t.Fatal(err)
				}
				session = node.FormatSessionID(p.Session())
				eventually(t, 10*time.Second, "b knows the session's record and trace", func() bool {
					r, ok := b.Cluster.Lookup(session)
					return ok && r.Trace != ""
				})
				crash(a)
				<-old.done
				openRaw(t, b.URL(), "tc", old.hello) // only Last-Event-ID, like EventSource
			}
			oldSpan := sessionSpan(t, recA, session)
			_ = b.Server.Close() // end b's streams so their spans are recorded
			newSpan := sessionSpan(t, recB, session)
			if !linked(newSpan, oldSpan.SpanContext()) {
				t.Fatalf("%s: new session span links %v, want a link to the old session span %v",
					name, newSpan.Links(), oldSpan.SpanContext())
			}
			if newSpan.Parent().IsValid() {
				t.Fatalf("%s: client-controlled context became a parent", name)
			}
		})
	}
}

// The same across a real crash: a is a herald process killed with SIGKILL,
// b runs in-process with a span recorder. a's session span never ends (the
// process dies with it), so the link is checked against the traceparent a
// announced in its hello.
func TestTraceContinuesAcrossKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process test")
	}
	for _, sdk := range []bool{true, false} {
		name := map[bool]string{true: "sdk", false: "browser"}[sdk]
		t.Run(name, func(t *testing.T) {
			rd := redistest.StartServer(t)
			a := startRaceProc(t, "a", []string{"HERALD_TELEMETRY__TRACE_SAMPLE_RATIO=1"},
				"--redis", rd.URL(), "--gossip-listen", "127.0.0.1:0")
			telB, recB, err := observability.NewTestTelemetry(observability.Config{Node: "b"})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = telB.Shutdown(context.Background()) })
			join := a.Gossip
			if sdk {
				// b never hears of a's session: the link can only come
				// from the traceparent the SDK sends.
				join = ""
			}
			b := runGossipNodeWith(t, nil, "b", rd.URL(), join, telB)

			var session, oldTrace string
			if sdk {
				first := sdkAcrossLoss(t, a.URL, b.URL(), a.kill)
				session, oldTrace = first.Session, first.Trace
			} else {
				eventually(t, 20*time.Second, "b joined a", func() bool { return len(aliveSet(b)) == 2 })
				old := openRaw(t, a.URL, "tc", "")
				session, oldTrace = old.info.Session, old.info.Trace
				if old.info.Node != "a" || oldTrace == "" {
					t.Fatalf("hello %+v, want node a with a trace", old.info)
				}
				eventually(t, 10*time.Second, "b knows the session's record and trace", func() bool {
					r, ok := b.Cluster.Lookup(session)
					return ok && r.Trace != ""
				})
				a.kill()
				select {
				case <-old.done:
				case <-time.After(10 * time.Second):
					t.Fatal("the stream on a outlived its process")
				}
				openRaw(t, b.URL(), "tc", old.hello) // only Last-Event-ID, like EventSource
			}
			select {
			case <-a.exited:
			default:
				t.Fatal("a is still running")
			}
			_ = b.Server.Close() // end b's streams so their spans are recorded
			newSpan := sessionSpan(t, recB, session)
			if want := spanOf(t, oldTrace); !linked(newSpan, want) {
				t.Fatalf("%s: new session span links %v, want a link to the killed node's session span %s",
					name, newSpan.Links(), oldTrace)
			}
			if newSpan.Parent().IsValid() {
				t.Fatalf("%s: client-controlled context became a parent", name)
			}
		})
	}
}
