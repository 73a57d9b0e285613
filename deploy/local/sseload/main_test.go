package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http/httptest"
	"os/exec"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heraldpush/herald/push/hub"
	"github.com/heraldpush/herald/push/node"
	"github.com/heraldpush/herald/push/redistest"
	"github.com/heraldpush/herald/push/server"
	"github.com/heraldpush/herald/push/store/redisstore"
	pushstream "github.com/heraldpush/herald/push/stream"
)

// startHerald runs one dev-mode Herald node over a real redis-server and a
// real HTTP listener. Its queues take queue as their limits: a MaxBytes of
// one byte makes the node cut every stream as slow at its first live event
// after the replay (the server-side cut-off of a slow client), so every
// event then reaches the client only by resuming from its Last-Event-ID.
func startHerald(t *testing.T, queue hub.Limits) (*server.Server, string) {
	t.Helper()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	rs := redistest.StartServer(t)
	store, err := redisstore.New(redisstore.Config{URL: rs.URL(), KeyPrefix: "sseload", Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close() })
	h, err := hub.New(hub.Config{Store: store, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := server.New(server.Config{
		Node: node.Config{Name: "n1"}, Store: store, Hub: h, Dev: true, Logger: quiet,
		Stream: pushstream.Config{
			Heartbeat: time.Second, RetryMin: 20 * time.Millisecond, RetryMax: 60 * time.Millisecond,
			Queue: queue,
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewUnstartedServer(srv.Handler())
	hs.Config = server.NewHTTPServer(srv.Handler(), quiet)
	hs.Start()
	t.Cleanup(func() {
		_ = srv.Close()
		hs.CloseClientConnections()
		hs.Close()
		h.Close()
	})
	return srv, hs.URL
}

// buildTool builds this command, as scale.sh does, so the test drives the
// real binary with its real flags and reads its JSON report.
func buildTool(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "sseload")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// report is the part of sseload's JSON line the tests read.
type report struct {
	Streams    int64            `json:"streams"`
	Published  int64            `json:"published"`
	Received   int64            `json:"received"`
	Expected   int64            `json:"expected"`
	Lost       *int64           `json:"lost"`
	Duplicated *int64           `json:"duplicated"`
	Reconnects map[string]int64 `json:"reconnects"`
}

func runTool(t *testing.T, bin string, args ...string) report {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("sseload: %v\nstderr: %s", err, stderr.String())
	}
	var r report
	if err := json.Unmarshal(stdout.Bytes(), &r); err != nil {
		t.Fatalf("report %q: %v", stdout.String(), err)
	}
	t.Logf("report: %s", bytes.TrimSpace(stdout.Bytes()))
	return r
}

// TestResumeAfterSlowCutoff: the node cuts every stream as slow (a queue of
// one byte: the first live event after each replay overflows it; a MaxLag
// of 1ns did this before ADR 0034, which counts only a connection's stalled
// writes as lag), so a subscriber that
// does not resume with Last-Event-ID loses every event after its first cut.
// The tool's subscribers must reconnect like a Herald client and account
// for every published event exactly: none lost, none duplicated.
func TestResumeAfterSlowCutoff(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the tool and runs a node")
	}
	bin := buildTool(t)
	srv, url := startHerald(t, hub.Limits{MaxBytes: 1})
	const subs = 20
	r := runTool(t, bin,
		"-sub", url+"/v1/stream?topic=t", "-pub", url+"/v1/topics/t/events",
		"-body", `{"data":"{ts} {seq}"}`, "-json-body",
		"-subscribers", "20", "-rate", "20", "-duration", "2s", "-drain", "10s", "-connect-rate", "200")
	st := srv.Stats()
	if st.SlowEnded == 0 {
		t.Fatalf("the node cut no stream as slow (%+v): the test does not test resuming", st)
	}
	if r.Streams != subs || r.Published < 20 {
		t.Fatalf("streams %d, published %d: want %d streams and ≥ 20 events", r.Streams, r.Published, subs)
	}
	if r.Lost == nil || r.Duplicated == nil {
		t.Fatalf("the report has no exact lost/duplicated counts")
	}
	if *r.Lost != 0 || *r.Duplicated != 0 || r.Received != r.Expected {
		t.Fatalf("lost %d, duplicated %d, received %d of %d: want every event exactly once", *r.Lost, *r.Duplicated, r.Received, r.Expected)
	}
	var n int64
	for _, c := range r.Reconnects {
		n += c
	}
	if n == 0 {
		t.Fatalf("no reconnect counted though the node cut %d streams as slow", st.SlowEnded)
	}
}

// TestSharedTopicTags: two load processes on one topic (scale.sh's shared
// shape), each publishing round-robin over a list of URLs with its own
// -tag: every stream receives both processes' events, and each process
// counts exactly its own — none lost, none duplicated, received equal to
// expected — passing over the other's.
func TestSharedTopicTags(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the tool and runs a node")
	}
	bin := buildTool(t)
	srv, url := startHerald(t, hub.Limits{})
	pub := url + "/v1/topics/t/events"
	var published atomic.Int64
	t.Run("processes", func(t *testing.T) {
		for _, tag := range []string{"p0", "p1"} {
			t.Run(tag, func(t *testing.T) {
				t.Parallel()
				r := runTool(t, bin,
					"-sub", url+"/v1/stream?topic=t", "-pub", pub+","+pub, "-tag", tag,
					"-body", `{"data":"{ts} {seq}"}`, "-json-body",
					"-subscribers", "10", "-rate", "10", "-duration", "2s", "-drain", "10s", "-connect-rate", "200")
				published.Add(r.Published)
				if r.Lost == nil || r.Duplicated == nil {
					t.Fatalf("the report has no exact lost/duplicated counts")
				}
				if r.Streams != 10 || r.Published < 10 || *r.Lost != 0 || *r.Duplicated != 0 || r.Received != r.Expected {
					t.Fatalf("streams %d, published %d, lost %d, duplicated %d, received %d of %d: want 10 streams, ≥ 10 events, each of its own once",
						r.Streams, r.Published, *r.Lost, *r.Duplicated, r.Received, r.Expected)
				}
			})
		}
	})
	// Each process's own events reach its 10 streams; sharing the topic,
	// its streams also get the other's.
	if st := srv.Stats(); st.Delivered <= uint64(published.Load())*10 {
		t.Fatalf("node delivered %d events of %d published: the processes' streams did not share the topic", st.Delivered, published.Load())
	}
}
