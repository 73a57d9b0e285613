package server_test

import (
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/heraldpush/herald/push"
	"github.com/heraldpush/herald/push/redistest"
	"github.com/heraldpush/herald/push/store/redisstore"
)

var prefixSeq atomic.Int64

// newRedisStore returns a store on a fresh redis-server owned by the test.
func newRedisStore(t testing.TB, r push.Retention) push.Store {
	t.Helper()
	rs := redistest.StartServer(t)
	opts, err := redisstore.ParseURL(rs.URL())
	if err != nil {
		t.Fatal(err)
	}
	s, err := redisstore.New(redisstore.Config{
		Options:   opts,
		Origin:    "local",
		KeyPrefix: fmt.Sprintf("t%d", prefixSeq.Add(1)),
		Retention: push.RetentionPolicy{Default: r},
		Logger:    quietLogger(),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}
