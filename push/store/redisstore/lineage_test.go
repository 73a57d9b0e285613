package redisstore_test

import (
	"fmt"
	"testing"

	"github.com/heraldpush/herald/push"
	"github.com/heraldpush/herald/push/redistest"
	"github.com/heraldpush/herald/push/store/internal/storeutil"
	"github.com/heraldpush/herald/push/store/redisstore"
	"github.com/heraldpush/herald/push/store/storetest"
)

// TestLineage runs the lineage contract against a real redis-server: a
// restart that lost nothing is SAVE + kill -9 + start (the same data a
// clean SHUTDOWN with persistence leaves), a rollback is kill -9 + start
// from the last SAVE.
func TestLineage(t *testing.T) {
	t.Parallel()
	storetest.RunLineage(t, func(t *testing.T) storetest.Backend {
		srv := redistest.StartServer(t) // appendonly no, no save points
		client := srv.Client(t)
		cfg := redisstore.Config{KeyPrefix: "t" + storeutil.NewEpoch()}
		s := newStore(t, client, cfg)
		save := func(t *testing.T) {
			t.Helper()
			if err := client.Save(testCtx(t)).Err(); err != nil {
				t.Fatal(err)
			}
		}
		restart := func(t *testing.T) {
			srv.Kill()
			srv.Restart(t)
			waitReady(t, s, "any")
		}
		return storetest.Backend{
			Store:    s,
			NewStore: func(t *testing.T) push.Store { return newStore(t, srv.Client(t), cfg) },
			Snapshot: save,
			Restart: func(t *testing.T) {
				save(t)
				restart(t)
			},
			Rollback: restart,
		}
	})
}

// A primary that wrote an epoch, lost its tail by being demoted and
// re-synced from a lagging replica that took over, and is then promoted
// again, keeps its run_id: a run_id-only generation would let it continue
// that epoch and hand out (epoch, offset) pairs it already handed out for
// other events. Promotion changes master_replid, which the generation
// includes (ADR 0024), so it begins a new epoch.
func TestEpochChangesWhenAPrimaryIsPromotedAgainAfterLosingItsTail(t *testing.T) {
	t.Parallel()
	a := redistest.StartServer(t)
	b := redistest.StartServer(t, redistest.WithReplicaOf(a.Addr()))
	ctx := testCtx(t)
	ac, bc := a.Client(t), b.Client(t)
	cfg := redisstore.Config{KeyPrefix: "again"}
	as, bs := newStore(t, ac, cfg), newStore(t, bc, cfg)
	const topic = "again"
	inSync := func(s push.Store, last uint64) {
		t.Helper()
		eventually(t, func() bool { return info(t, s, topic).Last == last })
	}
	// b is the primary, a its replica, 1..4 written by b.
	appendN(t, as, topic, 1, 2)
	inSync(bs, 2)
	if err := bc.ReplicaOf(ctx, "NO", "ONE").Err(); err != nil {
		t.Fatal(err)
	}
	if err := ac.ReplicaOf(ctx, "127.0.0.1", fmt.Sprint(b.Port())).Err(); err != nil {
		t.Fatal(err)
	}
	appendN(t, bs, topic, 3, 2)
	inSync(as, 4)
	// b acknowledges 5, which a never gets; a takes over.
	// (a follows a dead address meanwhile: it keeps its data, gets nothing.)
	if err := ac.ReplicaOf(ctx, "127.0.0.1", "1").Err(); err != nil {
		t.Fatal(err)
	}
	lostRes := appendN(t, bs, topic, 5, 1)[0]
	if err := ac.ReplicaOf(ctx, "NO", "ONE").Err(); err != nil {
		t.Fatal(err)
	}
	if err := bc.ReplicaOf(ctx, "127.0.0.1", fmt.Sprint(a.Port())).Err(); err != nil {
		t.Fatal(err)
	}
	inSync(bs, 4) // b re-synced from a: its 5 is gone
	// b is promoted again before anything was written on a.
	if err := bc.ReplicaOf(ctx, "NO", "ONE").Err(); err != nil {
		t.Fatal(err)
	}
	if err := ac.ReplicaOf(ctx, "127.0.0.1", fmt.Sprint(b.Port())).Err(); err != nil {
		t.Fatal(err)
	}
	r := appendN(t, bs, topic, 50, 1)[0]
	if r.Offset != 5 {
		t.Fatalf("offset %d, want 5 (b's head after the re-sync is 4)", r.Offset)
	}
	if r.Epoch == lostRes.Epoch {
		t.Fatalf("(%s, 5) handed out twice: for event-5 (lost) and event-50", r.Epoch)
	}
	in := info(t, bs, topic)
	if len(in.Lineage) == 0 || in.Lineage[0] != (push.Fork{Epoch: lostRes.Epoch, At: 4}) {
		t.Fatalf("lineage %+v, want a fork from %s at 4", in.Lineage, lostRes.Epoch)
	}
}
