package node

import (
	"time"

	"github.com/heraldpush/herald/internal/defaults"
)

// Config configures a Node. New fills zero fields from DefaultConfig,
// except RebalanceWindow, whose zero value turns rebalancing off.
type Config struct {
	// Name is this node's name, reported in herald.hello.
	Name string
	// Region is this node's region, reported in session records.
	Region string
	Balance
	Regions
}

// Balance tunes admission and load balancing between the nodes of a region.
type Balance struct {
	// ConnectionTarget is the number of streams this node aims to hold;
	// above it new streams are redirected (Redirect) or shed. 0 = none.
	ConnectionTarget int `koanf:"connection_target"`
	// Redirect answers new streams with 307 to a less loaded peer's
	// advertise_url when over target or draining. Enable it only when
	// clients can reach every node's advertised URL.
	Redirect bool `koanf:"redirect"`
	// RebalanceWindow spreads the streams a node above the region's
	// average sheds after a join; 0 disables rebalancing.
	RebalanceWindow time.Duration `koanf:"rebalance_window"`
	// LoadInterval is how often the node publishes its load to the cluster
	// and checks for joins.
	LoadInterval time.Duration `koanf:"-"`
}

// Regions tunes multi-region behaviour.
type Regions struct {
	// Interval is the region loop's period: heartbeat written, replication
	// lag of every remote origin measured, evacuation orders read.
	Interval time.Duration `koanf:"interval"`
	// ReplicaWait bounds how long a resume waits for a remote origin's
	// replica to reach the client's cursor before a replica_behind reset.
	ReplicaWait time.Duration `koanf:"replica_wait"`
	// EvacuationWindow spreads stream closes when the region is evacuated.
	EvacuationWindow time.Duration `koanf:"evacuation_window"`
	// EvacuationCatchUp bounds the wait for other regions' replicas to
	// reach this region's head before streams are moved.
	EvacuationCatchUp time.Duration `koanf:"evacuation_catch_up"`
}

// DefaultConfig returns the documented defaults.
func DefaultConfig() Config {
	return Config{
		Name: "herald",
		Balance: Balance{
			RebalanceWindow: 30 * time.Second,
			LoadInterval:    time.Second,
		},
		Regions: Regions{
			Interval:          time.Second,
			ReplicaWait:       2 * time.Second,
			EvacuationWindow:  30 * time.Second,
			EvacuationCatchUp: time.Minute,
		},
	}
}

// WithDefaults returns c with its zero fields (but RebalanceWindow) set
// from DefaultConfig.
func (c Config) WithDefaults() Config {
	d := DefaultConfig()
	if c.Name == "" {
		c.Name = d.Name
	}
	defaults.Positive(&c.LoadInterval, d.LoadInterval)
	defaults.Positive(&c.Interval, d.Interval)
	defaults.Positive(&c.ReplicaWait, d.ReplicaWait)
	defaults.Positive(&c.EvacuationWindow, d.EvacuationWindow)
	defaults.Positive(&c.EvacuationCatchUp, d.EvacuationCatchUp)
	return c
}
