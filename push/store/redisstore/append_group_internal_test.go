package redisstore

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/heraldpush/herald/push"
	"github.com/heraldpush/herald/push/redistest"
	"github.com/redis/go-redis/v9"
)

// A batch whose script is not loaded (fresh server, SCRIPT FLUSH, failover;
// on a Cluster, on each node) is sent again with the script's body: every
// call of it succeeds. On a Cluster the batch spans topics on all nodes.
func TestGroupCommitBatchReloadsScript(t *testing.T) {
	t.Parallel()
	for name, client := range map[string]redis.UniversalClient{
		"single":  redistest.StartServer(t).Client(t),
		"cluster": redistest.StartCluster(t, 3).Client(t),
	} {
		t.Run(name, func(t *testing.T) {
			s, err := New(Config{Client: client, Origin: "eu-1", KeyPrefix: "ns", AppendBatch: 1})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = s.Close() })
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if err := client.ScriptFlush(ctx).Err(); err != nil {
				t.Fatal(err)
			}
			c := &committer{client: client, maxBatch: 64}
			batch := make([]*appendCall, 12)
			for i := range batch {
				keys, args, size := s.appendArgs(fmt.Sprintf("topic-%d", i), []push.Draft{{Type: "e"}})
				batch[i] = &appendCall{ctx: ctx, keys: keys, args: args, size: size, done: make(chan struct{})}
			}
			c.send(batch)
			for i, call := range batch {
				<-call.done
				res, err := parseAppend(call.raw, 1)
				if call.err != nil || err != nil || res[0].Offset != 1 {
					t.Fatalf("call %d: %v %v %+v", i, call.err, err, res)
				}
			}
		})
	}
}
