package main

import (
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/heraldpush/herald/cluster"
)

// Keys of the pool configuration test, base64 of 32 bytes each.
const (
	poolLANKey = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
	poolOldKey = "ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8="
	poolWANKey = "QEFCQ0RFRkdISUpLTE1OT1BRUlNUVVZXWFlaW1xdXl8="
)

// poolYAML sets every key of both gossip pools.
const poolYAML = `
dev: true
node_name: n1
region: eu
gossip_listen: 10.0.0.1:7946
gossip_advertise: 192.0.2.1:17946
join: [10.0.0.2:7946, herald-gossip.herald.svc:7946]
gossip_key: ` + poolLANKey + `
gossip_old_keys: [` + poolOldKey + `]
cluster:
  label: herald/eu-blue
  rejoin_interval: 7s
  dead_grace: 45s
wan_listen: 10.0.0.1:7947
wan_advertise: 198.51.100.1:17947
wan_join: [203.0.113.9:7947]
wan_key: ` + poolWANKey + `
federation:
  label: herald-wan-blue
`

// TestConfigPoolKeys guards the keys of the two gossip pools, the region's
// LAN pool and the WAN pool between regions: a file that sets every one of
// them decodes to these values, and a file that sets none keeps the
// documented defaults. The pools' settings share one type in package
// cluster; the keys users write must not follow that shape.
func TestConfigPoolKeys(t *testing.T) {
	cfg, err := loadConfig(flagSet(t), func() []string { return []string{"HERALD_CONFIG=herald.yaml"} },
		func(string) ([]byte, error) { return []byte(poolYAML), nil })
	if err != nil {
		t.Fatal(err)
	}
	lan := []struct {
		key       string
		got, want any
	}{
		{"gossip_listen", cfg.GossipListen, "10.0.0.1:7946"},
		{"gossip_advertise", cfg.GossipAdvertise, "192.0.2.1:17946"},
		{"gossip_key", cfg.GossipKey, poolLANKey},
		{"cluster.label", cfg.Cluster.Label, "herald/eu-blue"},
		{"cluster.rejoin_interval", cfg.Cluster.RejoinInterval, 7 * time.Second},
		{"cluster.dead_grace", cfg.Cluster.DeadGrace, 45 * time.Second},
		{"wan_listen", cfg.WANListen, "10.0.0.1:7947"},
		{"wan_advertise", cfg.WANAdvertise, "198.51.100.1:17947"},
		{"wan_key", cfg.WANKey, poolWANKey},
		{"federation.label", cfg.Federation.Label, "herald-wan-blue"},
	}
	for _, c := range lan {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.key, c.got, c.want)
		}
	}
	lists := []struct {
		key       string
		got, want []string
	}{
		{"join", cfg.Join, []string{"10.0.0.2:7946", "herald-gossip.herald.svc:7946"}},
		{"gossip_old_keys", cfg.GossipOldKeys, []string{poolOldKey}},
		{"wan_join", cfg.WANJoin, []string{"203.0.113.9:7947"}},
	}
	for _, c := range lists {
		if !slices.Equal(c.got, c.want) {
			t.Errorf("%s = %q, want %q", c.key, c.got, c.want)
		}
	}

	def, err := loadConfig(flagSet(t), func() []string { return []string{"HERALD_CONFIG=herald.yaml"} },
		func(string) ([]byte, error) {
			return []byte("dev: true\ngossip_listen: 127.0.0.1:0\nwan_listen: 127.0.0.1:0\n"), nil
		})
	if err != nil {
		t.Fatal(err)
	}
	if def.Cluster.Label != "" || def.Cluster.RejoinInterval != 30*time.Second || def.Cluster.DeadGrace != 30*time.Second ||
		def.Federation.Label != "" || def.GossipAdvertise != "" || def.WANAdvertise != "" || def.WANKey != "" {
		t.Errorf("pool defaults changed: cluster %+v, federation label %q, advertise %q/%q, wan_key %q",
			def.Cluster, def.Federation.Label, def.GossipAdvertise, def.WANAdvertise, def.WANKey)
	}
}

// TestConfigPoolKeysReachPools checks that the pool keys land in the
// cluster package's configs: each pool's shared settings (cluster.PoolConfig)
// from its own keys, the WAN key falling back to gossip_key, and the WAN
// node name made unique across regions.
func TestConfigPoolKeysReachPools(t *testing.T) {
	cfg, err := loadConfig(flagSet(t), func() []string { return []string{"HERALD_CONFIG=herald.yaml"} },
		func(string) ([]byte, error) { return []byte(poolYAML), nil })
	if err != nil {
		t.Fatal(err)
	}
	key := func(s string) []byte {
		b, err := cluster.ParseKey(s)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	lan, err := clusterConfig(cfg, "https://n1.eu.example")
	if err != nil {
		t.Fatal(err)
	}
	wantLAN := cluster.PoolConfig{
		NodeName: "n1", Region: "eu", Dev: true,
		BindAddr: "10.0.0.1", BindPort: 7946, AdvertiseAddr: "192.0.2.1", AdvertisePort: 17946,
		Join:           []string{"10.0.0.2:7946", "herald-gossip.herald.svc:7946"},
		RejoinInterval: 7 * time.Second,
		Keys:           [][]byte{key(poolLANKey), key(poolOldKey)},
		Label:          "herald/eu-blue",
	}
	if !reflect.DeepEqual(lan.PoolConfig, wantLAN) {
		t.Errorf("LAN pool:\n got %+v\nwant %+v", lan.PoolConfig, wantLAN)
	}
	if lan.DeadGrace != 45*time.Second || lan.HTTPURL != "https://n1.eu.example" || lan.Version != Version {
		t.Errorf("LAN config: dead grace %v, URL %q, version %q", lan.DeadGrace, lan.HTTPURL, lan.Version)
	}

	wan, err := federationConfig(cfg, "https://eu.example")
	if err != nil {
		t.Fatal(err)
	}
	wantWAN := cluster.PoolConfig{
		NodeName: "n1.eu", Region: "eu", Dev: true,
		BindAddr: "10.0.0.1", BindPort: 7947, AdvertiseAddr: "198.51.100.1", AdvertisePort: 17947,
		Join:  []string{"203.0.113.9:7947"},
		Keys:  [][]byte{key(poolWANKey)},
		Label: "herald-wan-blue",
	}
	if !reflect.DeepEqual(wan.PoolConfig, wantWAN) || wan.RegionURL != "https://eu.example" {
		t.Errorf("WAN pool:\n got %+v %q\nwant %+v", wan.PoolConfig, wan.RegionURL, wantWAN)
	}
	cfg.WANKey = ""
	if wan, err := federationConfig(cfg, ""); err != nil || !reflect.DeepEqual(wan.Keys, [][]byte{key(poolLANKey)}) {
		t.Errorf("WAN keys without wan_key = %v, %v; want gossip_key", wan.Keys, err)
	}
	cfg.WANAdvertise = "no-port"
	if _, err := federationConfig(cfg, ""); err == nil || !strings.Contains(err.Error(), "wan_advertise") {
		t.Errorf("bad wan_advertise: %v, want an error naming the key", err)
	}
}
