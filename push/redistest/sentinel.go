package redistest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Sentinel topology timings: fast enough for tests, the values measured in
// DEPENDENCIES.md (kill → writes OK on the new primary in about 3 s).
const (
	sentinelMasterName      = "mymaster"
	sentinelQuorum          = 2
	sentinelDownAfter       = 1000 * time.Millisecond
	sentinelFailoverTimeout = 5000 * time.Millisecond
	sentinelReadyTimeout    = 30 * time.Second
)

type sentinelMonitor struct {
	name            string
	host            string
	masterPort      int
	quorum          int
	downAfter       time.Duration
	failoverTimeout time.Duration
	port            int // the sentinel's own port the config was written for
}

// SentinelSet is a primary, one replica and three Sentinels monitoring them.
type SentinelSet struct {
	sentinels []*Server

	mu     sync.Mutex
	data   []*Server // primary and replica, in start order
	killed string    // address of the last primary killed by KillPrimary
}

// StartSentinel starts a primary, one replica of it and three Sentinels
// (quorum 2, down-after 1000 ms, failover-timeout 5000 ms), each with a fresh
// configuration, and waits until the replica is in sync and every Sentinel
// knows the two others and the replica.
func StartSentinel(tb testing.TB) *SentinelSet {
	tb.Helper()
	primary := StartServer(tb)
	replica := StartServer(tb, WithReplicaOf(primary.Addr()))
	set := &SentinelSet{data: []*Server{primary, replica}}
	for i := 0; i < 3; i++ {
		s := &Server{opts: options{
			dir: tb.TempDir(),
			sentinel: &sentinelMonitor{
				name: sentinelMasterName, host: "127.0.0.1", masterPort: primary.Port(),
				quorum: sentinelQuorum, downAfter: sentinelDownAfter, failoverTimeout: sentinelFailoverTimeout,
			},
		}}
		s.logPath = s.opts.dir + "/sentinel.log"
		tb.Cleanup(s.Kill)
		if err := s.start(0); err != nil {
			tb.Fatalf("redistest: sentinel %d: %v", i, err)
		}
		set.sentinels = append(set.sentinels, s)
	}

	err := waitFor(sentinelReadyTimeout, func(ctx context.Context) error {
		if err := replicaInSync(ctx, replica.Addr()); err != nil {
			return err
		}
		for _, s := range set.sentinels {
			if err := sentinelSees(ctx, s.Addr(), 2, 1); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		tb.Fatalf("redistest: sentinel topology not ready: %v", err)
	}
	return set
}

// MasterName returns the monitored master's name ("mymaster").
func (s *SentinelSet) MasterName() string { return sentinelMasterName }

// SentinelAddrs returns the three Sentinels' addresses.
func (s *SentinelSet) SentinelAddrs() []string {
	addrs := make([]string, len(s.sentinels))
	for i, sn := range s.sentinels {
		addrs[i] = sn.Addr()
	}
	return addrs
}

// URL returns "redis+sentinel://127.0.0.1:p1,127.0.0.1:p2,127.0.0.1:p3/mymaster".
func (s *SentinelSet) URL() string {
	return "redis+sentinel://" + strings.Join(s.SentinelAddrs(), ",") + "/" + sentinelMasterName
}

// Client returns a Sentinel-backed (failover) client for the master, closed
// when the test ends.
func (s *SentinelSet) Client(tb testing.TB) *redis.Client {
	tb.Helper()
	c := redis.NewFailoverClient(&redis.FailoverOptions{
		MasterName: sentinelMasterName, SentinelAddrs: s.SentinelAddrs(), DialTimeout: time.Second,
	})
	tb.Cleanup(func() { _ = c.Close() })
	return c
}

// Servers returns the data servers (initial primary first, then the replica).
func (s *SentinelSet) Servers() []*Server {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*Server(nil), s.data...)
}

// PrimaryAddr asks the Sentinels for the current primary's address.
func (s *SentinelSet) PrimaryAddr(ctx context.Context) (string, error) {
	var errs []error
	for _, sn := range s.sentinels {
		addr, err := masterAddr(ctx, sn.Addr())
		if err == nil {
			return addr, nil
		}
		errs = append(errs, err)
	}
	return "", errors.Join(errs...)
}

// KillPrimary SIGKILLs the current primary (as reported by the Sentinels)
// and returns its address.
func (s *SentinelSet) KillPrimary(tb testing.TB) string {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	addr, err := s.PrimaryAddr(ctx)
	if err != nil {
		tb.Fatalf("redistest: find primary: %v", err)
	}
	s.mu.Lock()
	var victim *Server
	for _, d := range s.data {
		if d.Addr() == addr {
			victim = d
		}
	}
	s.killed = addr
	s.mu.Unlock()
	if victim == nil {
		tb.Fatalf("redistest: Sentinels name %s as primary, which this set did not start", addr)
	}
	victim.Kill()
	return addr
}

// WaitFailover waits until the Sentinels name a primary other than the one
// KillPrimary killed and that server reports role master. It returns the
// new primary's address.
func (s *SentinelSet) WaitFailover(ctx context.Context) (string, error) {
	s.mu.Lock()
	killed := s.killed
	s.mu.Unlock()
	if killed == "" {
		return "", errors.New("redistest: WaitFailover before KillPrimary")
	}
	for {
		addr, err := s.PrimaryAddr(ctx)
		if err == nil && addr != killed {
			if role, err := roleOf(ctx, addr); err == nil && role == "master" {
				return addr, nil
			}
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("redistest: no failover away from %s: %w", killed, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func masterAddr(ctx context.Context, sentinelAddr string) (string, error) {
	sc := redis.NewSentinelClient(&redis.Options{Addr: sentinelAddr, DialTimeout: time.Second, DialerRetries: 1, MaxRetries: -1})
	defer sc.Close()
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	hp, err := sc.GetMasterAddrByName(ctx, sentinelMasterName).Result()
	if err != nil {
		return "", err
	}
	if len(hp) != 2 {
		return "", fmt.Errorf("sentinel %s: unexpected master address %q", sentinelAddr, hp)
	}
	return net.JoinHostPort(hp[0], hp[1]), nil
}

// sentinelSees checks that a Sentinel knows wantSentinels other Sentinels and
// wantReplicas healthy replicas.
func sentinelSees(ctx context.Context, addr string, wantSentinels, wantReplicas int) error {
	sc := redis.NewSentinelClient(&redis.Options{Addr: addr, DialTimeout: time.Second, DialerRetries: 1, MaxRetries: -1})
	defer sc.Close()
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	sn, err := sc.Sentinels(ctx, sentinelMasterName).Result()
	if err != nil {
		return fmt.Errorf("sentinel %s: %w", addr, err)
	}
	if len(sn) < wantSentinels {
		return fmt.Errorf("sentinel %s knows %d other sentinels, want %d", addr, len(sn), wantSentinels)
	}
	reps, err := sc.Replicas(ctx, sentinelMasterName).Result()
	if err != nil {
		return fmt.Errorf("sentinel %s: %w", addr, err)
	}
	healthy := 0
	for _, r := range reps {
		if !strings.Contains(r["flags"], "down") && !strings.Contains(r["flags"], "disconnected") {
			healthy++
		}
	}
	if healthy < wantReplicas {
		return fmt.Errorf("sentinel %s knows %d healthy replicas, want %d", addr, healthy, wantReplicas)
	}
	return nil
}

func replicaInSync(ctx context.Context, addr string) error {
	info, err := infoSection(ctx, addr, "replication")
	if err != nil {
		return err
	}
	if !strings.Contains(info, "master_link_status:up") {
		return fmt.Errorf("replica %s: master link not up", addr)
	}
	return nil
}

func roleOf(ctx context.Context, addr string) (string, error) {
	info, err := infoSection(ctx, addr, "replication")
	if err != nil {
		return "", err
	}
	return infoField(info, "role"), nil
}

func infoSection(ctx context.Context, addr, section string) (string, error) {
	c := redis.NewClient(&redis.Options{Addr: addr, DialTimeout: time.Second, DialerRetries: 1, MaxRetries: -1})
	defer c.Close()
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	return c.Info(ctx, section).Result()
}

// infoField extracts "name:value" from INFO output.
func infoField(info, name string) string {
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), name+":"); ok {
			return v
		}
	}
	return ""
}

func atoiOr0(s string) int {
	n, _ := strconv.Atoi(s)
	return n
}
