package redisstore_test

import (
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
