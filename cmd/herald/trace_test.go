package main

import (
	"context"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/heraldpush/herald/cluster/gossiptest"
	"github.com/heraldpush/herald/observability"
	"github.com/heraldpush/herald/push"
	"github.com/heraldpush/herald/push/client"
	"github.com/heraldpush/herald/push/redistest"
	"github.com/heraldpush/herald/push/server"
)

// crash stops a node the way kill -9 does for everyone else: its streams
// drop and it vanishes from gossip without leaving.
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

func linked(s sdktrace.ReadOnlySpan, to sdktrace.ReadOnlySpan) bool {
	for _, l := range s.Links() {
		if l.SpanContext.SpanID() == to.SpanContext().SpanID() && l.SpanContext.TraceID() == to.SpanContext().TraceID() {
			return true
		}
	}
	return false
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
				hellos := make(chan push.Hello, 4)
				st := client.Subscribe(client.StreamConfig{Endpoints: []string{a.URL(), b.URL()}, Topics: []string{"tc"},
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
				t.Cleanup(stop)
				first := <-hellos
				if first.Node != "a" || first.Trace == "" {
					t.Fatalf("first hello %+v, want node a with a trace", first)
				}
				session = first.Session
				crash(a)
				select {
				case second := <-hellos:
					if second.Node != "b" || second.Session != session {
						t.Fatalf("second hello %+v, want node b, session %s", second, session)
					}
				case <-time.After(20 * time.Second):
					t.Fatal("no reconnect to b")
				}
				// Stop the client before b closes, or it would reconnect to b
				// and open a third session span, linked to the second.
				stop()
			} else {
				old := openRaw(t, a.URL(), "tc", "")
				p, err := push.ParseCursor(old.hello, []string{"tc"}, []string{"local"})
				if err != nil {
					t.Fatal(err)
				}
				session = server.FormatSessionID(p.Session())
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
			if !linked(newSpan, oldSpan) {
				t.Fatalf("%s: new session span links %v, want a link to the old session span %v",
					name, newSpan.Links(), oldSpan.SpanContext())
			}
			if newSpan.Parent().IsValid() {
				t.Fatalf("%s: client-controlled context became a parent", name)
			}
		})
	}
}
