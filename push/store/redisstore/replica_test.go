package redisstore_test

import (
	"errors"
	"testing"

	"github.com/heraldpush/herald/push"
	"github.com/heraldpush/herald/push/redistest"
	"github.com/heraldpush/herald/push/store/redisstore"
)

// A read-only store on a replica of another region's primary sees that
// region's events — history, epoch and live announcements — and refuses
// appends (the groundwork of multi-region reads, ADR 0007).
func TestReadOnlyStoreOnReplica(t *testing.T) {
	t.Parallel()
	primary := redistest.StartServer(t)
	replica := redistest.StartServer(t, redistest.WithReplicaOf(primary.Addr()))
	newStore := func(url string, ro bool) *redisstore.Store {
		s, err := redisstore.New(redisstore.Config{URL: url, Origin: "eu", KeyPrefix: "mr", ReadOnly: ro})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	writer := newStore(primary.URL(), false)
	reader := newStore(replica.URL(), true)

	if _, err := reader.Append(testCtx(t), "t", []push.Draft{{Type: "m", Data: []byte("x")}}); !errors.Is(err, push.ErrReadOnly) {
		t.Fatalf("append on the read-only store: %v, want ErrReadOnly", err)
	}
	var sk sink
	l, err := reader.Listen(&sk)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	if err := l.Watch(testCtx(t), "t"); err != nil {
		t.Fatal(err)
	}

	var epoch string
	for i := range 3 {
		res, err := writer.Append(testCtx(t), "t", []push.Draft{{Type: "m", Data: []byte{'a' + byte(i)}}})
		if err != nil {
			t.Fatal(err)
		}
		epoch = res[0].Epoch
	}
	// Replication is asynchronous: poll the replica until it has the head.
	eventually(t, func() bool {
		in, err := reader.Info(testCtx(t), []string{"t"})
		return err == nil && in[0].Last == 3
	})
	evs, in, err := reader.Read(testCtx(t), "t", 0, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 3 || evs[2].Offset != 3 || string(evs[2].Data) != "c" || in.Epoch != epoch || evs[0].Origin != "eu" {
		t.Fatalf("replica read %d events, info %+v; want offsets 1..3 in epoch %s", len(evs), in, epoch)
	}
	// The primary's PUBLISH reaches the replica's subscribers.
	eventually(t, func() bool { n, _ := sk.state(); return n == 3 })
}
