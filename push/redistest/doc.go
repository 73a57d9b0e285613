// Package redistest starts real redis-server processes for tests, the way
// net/http/httptest starts real HTTP servers: a single server
// (StartServer), a primary with a replica watched by three Sentinels
// (StartSentinel), or a Redis Cluster of N masters (StartCluster).
//
// Guarantees:
//   - Every process listens on a free 127.0.0.1 port chosen at start (never
//     6379), runs in the foreground as a child of the test binary, keeps its
//     files in a tb.TempDir(), and is killed and reaped by tb.Cleanup. On Linux
//     the child also receives SIGKILL if the test binary dies (Pdeathsig).
//   - Start functions return only once the server answers PING (and, for the
//     topologies, once replication, Sentinel discovery or cluster_state:ok is
//     reached), each within a bounded wait; otherwise the test fails with the
//     tail of the server's log.
//   - Nothing here touches a Redis it did not start.
//   - When redis-server is not installed the test is skipped, except when the
//     environment has CI=true: then it fails, so CI cannot go green by
//     skipping every Redis test.
//
// Concurrency: a Server's methods may be called from any goroutine, but
// Kill/Stop/Restart of one Server must not race with each other.
package redistest
