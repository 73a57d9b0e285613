package redistest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	toxiclient "github.com/Shopify/toxiproxy/v2/client"
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
	// proxies, in StartSentinelProxied sets, is each data server's proxy,
	// the address everyone (clients, Sentinels, replicas) uses for it.
	proxies map[*Server]*toxiclient.Proxy
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
	set.startSentinels(tb, primary.Port(), replica.Addr())
	return set
}

// StartSentinelProxied is StartSentinel with opts applied to both data
// servers and every path to a data server going through a fault proxy of
// its own (toxiproxy, in-process): the servers announce their proxy's
// address, so Sentinels, clients and replication all use it. Cutting or
// slowing a server's proxy cuts or slows that server's network. Both data
// servers start as primaries and the replica is attached at run time, so a
// server restarted later comes up as a primary and Sentinel assigns its
// role, as in a real deployment.
func StartSentinelProxied(tb testing.TB, opts ...Option) *SentinelSet {
	tb.Helper()
	set := &SentinelSet{proxies: map[*Server]*toxiclient.Proxy{}}
	for i := range 2 {
		px := StartProxy(tb, fmt.Sprintf("redis-%d", i), "127.0.0.1:1")
		_, port, err := net.SplitHostPort(px.Listen)
		if err != nil {
			tb.Fatal(err)
		}
		srv := StartServer(tb, append(slices.Clone(opts),
			WithArgs("--replica-announce-ip", "127.0.0.1", "--replica-announce-port", port))...)
		px.Upstream = srv.Addr()
		if err := px.Save(); err != nil {
			tb.Fatalf("redistest: point proxy at %s: %v", srv.Addr(), err)
		}
		set.data = append(set.data, srv)
		set.proxies[srv] = px
	}
	primary, replica := set.data[0], set.data[1]
	host, port, _ := net.SplitHostPort(set.proxies[primary].Listen)
	if reply, err := rawCommand(replica.Addr(), "REPLICAOF "+host+" "+port); err != nil || reply != "+OK" {
		tb.Fatalf("redistest: REPLICAOF: %q %v", reply, err)
	}
	pport, _ := strconv.Atoi(port)
	set.startSentinels(tb, pport, replica.Addr())
	return set
}

func (s *SentinelSet) startSentinels(tb testing.TB, masterPort int, replicaAddr string) {
	tb.Helper()
	for i := 0; i < 3; i++ {
		sn := &Server{opts: options{
			dir: tb.TempDir(),
			sentinel: &sentinelMonitor{
				name: sentinelMasterName, host: "127.0.0.1", masterPort: masterPort,
				quorum: sentinelQuorum, downAfter: sentinelDownAfter, failoverTimeout: sentinelFailoverTimeout,
			},
		}}
		sn.logPath = sn.opts.dir + "/sentinel.log"
		tb.Cleanup(sn.Kill)
		if err := sn.start(0); err != nil {
			tb.Fatalf("redistest: sentinel %d: %v", i, err)
		}
		s.sentinels = append(s.sentinels, sn)
	}
	err := waitFor(sentinelReadyTimeout, func(ctx context.Context) error {
		if err := replicaInSync(ctx, replicaAddr); err != nil {
			return err
		}
		for _, sn := range s.sentinels {
			if err := sentinelSees(ctx, sn.Addr(), 2, 1); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		tb.Fatalf("redistest: sentinel topology not ready: %v", err)
	}
}

// Proxy returns the fault proxy in front of data server srv (nil outside
// StartSentinelProxied sets).
func (s *SentinelSet) Proxy(srv *Server) *toxiclient.Proxy {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.proxies[srv]
}

// serverAt returns the data server whose address, or proxy address, is addr.
func (s *SentinelSet) serverAt(addr string) *Server {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, d := range s.data {
		if d.Addr() == addr || (s.proxies[d] != nil && s.proxies[d].Listen == addr) {
			return d
		}
	}
	return nil
}

// Primary returns the data server the Sentinels name as primary.
func (s *SentinelSet) Primary(ctx context.Context) (*Server, error) {
	addr, err := s.PrimaryAddr(ctx)
	if err != nil {
		return nil, err
	}
	if d := s.serverAt(addr); d != nil {
		return d, nil
	}
	return nil, fmt.Errorf("redistest: Sentinels name %s as primary, which this set did not start", addr)
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
	victim := s.serverAt(addr)
	s.mu.Lock()
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

// sentinelRejoinTimeout bounds WaitRejoined. Sentinel converts a restarted
// old primary only after it has reported role master for 8 s (four publish
// periods) on an INFO poll that runs every 10 s, then the replica syncs; a
// Sentinel whose timer jumped by more than 2 s (a starved machine) enters
// TILT mode and acts on nothing for 30 s. 75 s covers all of it.
const sentinelRejoinTimeout = 75 * time.Second

// WaitRejoined waits until srv, a former primary restarted after a
// failover, has been made a replica by the Sentinels and its link to the
// primary is up. On timeout the error carries each Sentinel's log tail
// (+tilt, +convert-to-slave), which says why it did not happen.
func (s *SentinelSet) WaitRejoined(ctx context.Context, srv *Server) (time.Duration, error) {
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, sentinelRejoinTimeout)
	defer cancel()
	var last error
	for {
		role, err := roleOf(ctx, srv.Addr())
		if err == nil && role == "slave" {
			err = replicaInSync(ctx, srv.Addr())
		} else if err == nil {
			err = fmt.Errorf("%s reports role %q", srv.Addr(), role)
		}
		if err == nil {
			return time.Since(start), nil
		}
		last = err
		select {
		case <-ctx.Done():
			var logs strings.Builder
			for i, sn := range s.sentinels {
				fmt.Fprintf(&logs, "\n--- sentinel %d (%s):\n%s", i, sn.Addr(), logTail(sn.LogPath(), 0))
			}
			return time.Since(start), fmt.Errorf("redistest: %s not back as an in-sync replica within %v: %w%s",
				srv.Addr(), sentinelRejoinTimeout, last, logs.String())
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
