package cluster

import (
	"context"
	"log/slog"
	"net"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
)

// joiner joins a memberlist pool through its seeds and through members that
// died recently. The region pool (Cluster) and the WAN pool (Federation)
// share it; each keeps its own member table and says which addresses are
// known or worth another try.
type joiner struct {
	ml       *memberlist.Memberlist // set by pool.started
	seeds    []string               // host:port, validated by the pool's constructor
	resolve  func(ctx context.Context, host string) ([]string, error)
	timeout  time.Duration   // bounds each DNS look-up
	every    time.Duration   // seed re-join period, for log lines
	stop     <-chan struct{} // set by pool.started
	log      *slog.Logger    // set by pool.started
	pool     string          // "" or "WAN ", prefixed to log messages
	attempts *atomic.Uint64
	failures *atomic.Uint64
}

// joinSeeds resolves the seeds and joins every address not in known (the
// pool's live members and this node).
func (j *joiner) joinSeeds(ctx context.Context, known map[string]bool) {
	var addrs []string
	for _, s := range j.seeds {
		host, port, err := splitSeed(s)
		if err != nil {
			continue
		}
		ips := []string{host}
		if net.ParseIP(host) == nil {
			lctx, cancel := context.WithTimeout(ctx, j.timeout)
			ips, err = j.resolve(lctx, host)
			cancel()
			if err != nil {
				j.log.Warn("cannot resolve "+j.pool+"seed", "seed", s, "err", err)
				continue
			}
		}
		for _, ip := range ips {
			a := net.JoinHostPort(ip, strconv.Itoa(port))
			if !known[a] {
				known[a] = true
				addrs = append(addrs, a)
			}
		}
	}
	if len(addrs) == 0 {
		return
	}
	n, err := j.joinEach(addrs)
	if n == 0 {
		j.log.Warn("could not join any "+j.pool+"seed; retrying", "seeds", addrs, "every", j.every.String(), "err", err)
		return
	}
	j.log.Info("joined "+j.pool+"seeds", "joined", n, "tried", len(addrs))
}

// reconnect joins members that died less than the reconnect timeout ago:
// memberlist never probes a dead member again, so without this the two
// sides of a healed partition would stay apart.
func (j *joiner) reconnect(addrs []string) {
	if len(addrs) == 0 {
		return
	}
	if n, _ := j.joinEach(addrs); n > 0 {
		j.log.Info("reconnected to dead "+j.pool+"members", "reached", n, "tried", len(addrs))
	}
}

// joinEach joins addresses one at a time (each a push/pull bounded by the
// TCP timeout), stopping early on Close. It returns how many succeeded and
// the last error.
func (j *joiner) joinEach(addrs []string) (int, error) {
	n := 0
	var last error
	for _, a := range addrs {
		select {
		case <-j.stop:
			return n, ErrClosed
		default:
		}
		j.attempts.Add(1)
		if _, err := j.ml.Join([]string{a}); err != nil {
			j.failures.Add(1)
			last = err
			continue
		}
		n++
	}
	return n, last
}
