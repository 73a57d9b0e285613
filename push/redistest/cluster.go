package redistest

import (
	"context"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

const (
	clusterSlots        = 16384
	clusterReadyTimeout = 30 * time.Second
	clusterNodeTimeout  = "2000"
)

// Cluster is a Redis Cluster of masters without replicas.
type Cluster struct {
	nodes []*Server
}

// StartCluster starts masters redis-server processes with cluster mode on,
// creates the cluster (redis-cli --cluster create for three or more masters,
// CLUSTER MEET and ADDSLOTSRANGE for fewer, which redis-cli refuses) and waits
// until every node reports cluster_state:ok and knows every other node.
func StartCluster(tb testing.TB, masters int) *Cluster {
	tb.Helper()
	if masters < 1 {
		tb.Fatalf("redistest: StartCluster needs at least one master, got %d", masters)
	}
	c := &Cluster{}
	for i := 0; i < masters; i++ {
		c.nodes = append(c.nodes, StartServer(tb, withClusterBus(), WithArgs(
			"--cluster-enabled", "yes",
			"--cluster-config-file", "nodes.conf",
			"--cluster-node-timeout", clusterNodeTimeout,
		)))
	}
	ctx, cancel := context.WithTimeout(context.Background(), clusterReadyTimeout)
	defer cancel()
	var err error
	if masters >= 3 {
		err = c.createWithCLI(ctx, tb)
	} else {
		err = c.createManually(ctx)
	}
	if err != nil {
		tb.Fatalf("redistest: create cluster: %v", err)
	}
	err = waitFor(clusterReadyTimeout, func(ctx context.Context) error {
		for _, n := range c.nodes {
			info, err := clusterInfo(ctx, n.Addr())
			if err != nil {
				return err
			}
			if infoField(info, "cluster_state") != "ok" ||
				atoiOr0(infoField(info, "cluster_slots_assigned")) != clusterSlots ||
				atoiOr0(infoField(info, "cluster_known_nodes")) != masters {
				return fmt.Errorf("node %s not ready: state=%s slots=%s known=%s", n.Addr(),
					infoField(info, "cluster_state"), infoField(info, "cluster_slots_assigned"), infoField(info, "cluster_known_nodes"))
			}
		}
		return nil
	})
	if err != nil {
		tb.Fatalf("redistest: cluster not ready: %v", err)
	}
	return c
}

func (c *Cluster) createWithCLI(ctx context.Context, tb testing.TB) error {
	requireBinary(tb, redisCLIBinary)
	args := []string{"--cluster", "create"}
	args = append(args, c.Addrs()...)
	args = append(args, "--cluster-yes")
	out, err := exec.CommandContext(ctx, redisCLIBinary, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("redis-cli %s: %w: %s", strings.Join(args, " "), err, out)
	}
	return nil
}

func (c *Cluster) createManually(ctx context.Context) error {
	per := clusterSlots / len(c.nodes)
	for i, n := range c.nodes {
		cl := redis.NewClient(&redis.Options{Addr: n.Addr(), DialTimeout: time.Second, DialerRetries: 1, MaxRetries: -1})
		lo, hi := i*per, (i+1)*per-1
		if i == len(c.nodes)-1 {
			hi = clusterSlots - 1
		}
		err := cl.Do(ctx, "CLUSTER", "ADDSLOTSRANGE", lo, hi).Err()
		if err == nil && i > 0 {
			err = cl.ClusterMeet(ctx, "127.0.0.1", strconv.Itoa(c.nodes[0].Port())).Err()
		}
		_ = cl.Close()
		if err != nil {
			return fmt.Errorf("node %s: %w", n.Addr(), err)
		}
	}
	return nil
}

func clusterInfo(ctx context.Context, addr string) (string, error) {
	cl := redis.NewClient(&redis.Options{Addr: addr, DialTimeout: time.Second, DialerRetries: 1, MaxRetries: -1})
	defer cl.Close()
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	return cl.ClusterInfo(ctx).Result()
}

// Nodes returns the cluster's servers.
func (c *Cluster) Nodes() []*Server { return append([]*Server(nil), c.nodes...) }

// Addrs returns the nodes' addresses.
func (c *Cluster) Addrs() []string {
	addrs := make([]string, len(c.nodes))
	for i, n := range c.nodes {
		addrs[i] = n.Addr()
	}
	return addrs
}

// URL returns "redis+cluster://127.0.0.1:p1,127.0.0.1:p2,…".
func (c *Cluster) URL() string { return "redis+cluster://" + strings.Join(c.Addrs(), ",") }

// Client returns a cluster client seeded with every node, closed when the
// test ends.
func (c *Cluster) Client(tb testing.TB) *redis.ClusterClient {
	tb.Helper()
	cl := redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs(), DialTimeout: time.Second})
	tb.Cleanup(func() { _ = cl.Close() })
	return cl
}

// withClusterBus makes a node pick a port whose cluster bus port is free too.
func withClusterBus() Option { return func(o *options) { o.clusterBus = true } }
