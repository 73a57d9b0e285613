package cluster

import (
	"testing"
	"time"
)

// TestPoolDefaults pins what zero fields become in each pool, so that the
// settings the LAN and WAN pools share are filled in the same way for both
// and each keeps its own preset (label, timings).
func TestPoolDefaults(t *testing.T) {
	var lan Config
	lan.NodeName, lan.Region, lan.Dev, lan.BindPort = "n", "eu", true, 7946
	got, err := lan.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	if got.BindAddr != "0.0.0.0" || got.AdvertisePort != 7946 || got.RejoinInterval != 30*time.Second ||
		got.Label != "herald/eu" || got.DeadGrace != 30*time.Second || got.HomeReplicas != 1 ||
		got.Tuning != LANTuning() || got.Resolver == nil || got.Logger == nil {
		t.Errorf("LAN defaults: %+v", got)
	}
	lan.DeadGrace = 10 * time.Minute
	if got, _ := lan.withDefaults(); got.Tuning.ReconnectTimeout != 20*time.Minute {
		t.Errorf("LAN ReconnectTimeout with DeadGrace 10m = %v, want 2*DeadGrace", got.Tuning.ReconnectTimeout)
	}

	var wan FederationConfig
	wan.NodeName, wan.Region, wan.Dev, wan.BindPort = "n.eu", "eu", true, 7947
	fed, err := wan.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	if fed.BindAddr != "0.0.0.0" || fed.AdvertisePort != 7947 || fed.RejoinInterval != 30*time.Second ||
		fed.Label != "herald-wan" || fed.Tuning != WANTuning() || fed.Resolver == nil || fed.Logger == nil {
		t.Errorf("WAN defaults: %+v", fed)
	}

	// What is set is kept, in either pool.
	for _, p := range []*PoolConfig{&lan.PoolConfig, &wan.PoolConfig} {
		p.BindAddr, p.AdvertiseAddr, p.AdvertisePort = "127.0.0.1", "192.0.2.1", 17000
		p.RejoinInterval, p.Label = 7*time.Second, "blue"
		p.Tuning.ProbeInterval = 3 * time.Second
	}
	got, err = lan.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	fed, err = wan.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	for name, p := range map[string]PoolConfig{"LAN": got.PoolConfig, "WAN": fed.PoolConfig} {
		if p.BindAddr != "127.0.0.1" || p.AdvertiseAddr != "192.0.2.1" || p.AdvertisePort != 17000 ||
			p.RejoinInterval != 7*time.Second || p.Label != "blue" || p.Tuning.ProbeInterval != 3*time.Second {
			t.Errorf("%s: set values not kept: %+v", name, p)
		}
	}
	if got.Tuning.GossipNodes != LANTuning().GossipNodes || fed.Tuning.GossipNodes != WANTuning().GossipNodes {
		t.Errorf("presets: LAN GossipNodes %d, WAN %d", got.Tuning.GossipNodes, fed.Tuning.GossipNodes)
	}

	if d := DefaultConfig(); d.RejoinInterval != 30*time.Second || d.DeadGrace != 30*time.Second || d.Tuning != LANTuning() {
		t.Errorf("DefaultConfig: %+v", d)
	}
	if d := DefaultFederationConfig(); d.Label != "herald-wan" || d.Tuning != WANTuning() {
		t.Errorf("DefaultFederationConfig: %+v", d)
	}
}
