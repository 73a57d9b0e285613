package server_test

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/heraldpush/herald/push"
	"github.com/heraldpush/herald/push/redistest"
	"github.com/heraldpush/herald/push/store/redisstore"
)

// scriptCalls counts the Lua script calls (every store read and append is
// one) a redis-server has served.
func scriptCalls(t *testing.T, rs *redistest.Server) int {
	t.Helper()
	info, err := rs.Client(t).Info(context.Background(), "commandstats").Result()
	if err != nil {
		t.Fatal(err)
	}
	total := 0
	for _, line := range strings.Split(info, "\n") {
		name, rest, ok := strings.Cut(strings.TrimSpace(line), ":")
		if !ok || !strings.HasPrefix(name, "cmdstat_eval") {
			continue
		}
		calls, _, _ := strings.Cut(strings.TrimPrefix(rest, "calls="), ",")
		c, _ := strconv.Atoi(calls)
		total += c
	}
	return total
}

// A fresh stream on a topic the node already watches starts at the head
// the hub knows (hub.Heads): no store call. It still misses nothing
// published after it connected, and a resuming stream still asks the store
// (its cursor's lineage and retention are the store's to judge).
func TestConnectFreshOnWatchedTopicCallsNoStore(t *testing.T) {
	rs := redistest.StartServer(t)
	opts, err := redisstore.ParseURL(rs.URL())
	if err != nil {
		t.Fatal(err)
	}
	store, err := redisstore.New(redisstore.Config{Options: opts, Origin: "local", KeyPrefix: "heads", Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	n := startNode(t, store, nil)

	first := n.openStream(t, []string{"w"}, "", nil)
	if h := first.next(wait); h.Type != push.EventHello {
		t.Fatalf("first event %+v, want herald.hello", h)
	}
	for i := range 3 {
		n.publish("w", "e", fmt.Sprint(i))
	}
	var last string
	for range 3 {
		last = first.next(wait).ID
	}

	before := scriptCalls(t, rs)
	fresh := n.openStream(t, []string{"w"}, "", nil)
	hello := fresh.next(wait)
	if hello.Type != push.EventHello {
		t.Fatalf("first event %+v, want herald.hello", hello)
	}
	if calls := scriptCalls(t, rs) - before; calls != 0 {
		t.Errorf("a fresh stream on a watched topic made %d store calls, want 0", calls)
	}
	if got := offsets(t, hello.ID, []string{"w"})["w"]; got != 3 {
		t.Errorf("fresh stream starts at offset %d, want the head 3", got)
	}
	n.publish("w", "e", "after")
	if ev := fresh.next(wait); ev.Data != "after" || offsets(t, ev.ID, []string{"w"})["w"] != 4 {
		t.Fatalf("fresh stream got %+v, want the event published after it connected (offset 4)", ev)
	}

	before = scriptCalls(t, rs)
	resumed := n.openStream(t, []string{"w"}, last, nil)
	if h := resumed.next(wait); h.Type != push.EventHello {
		t.Fatalf("first event %+v, want herald.hello", h)
	}
	if ev := resumed.next(wait); ev.Data != "after" {
		t.Fatalf("resumed stream got %+v, want the event after its cursor", ev)
	}
	if calls := scriptCalls(t, rs) - before; calls == 0 {
		t.Errorf("a resuming stream made no store call: its cursor was not checked against the store")
	}
}
