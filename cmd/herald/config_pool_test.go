package main

import (
	"slices"
	"testing"
	"time"
)

// TestConfigPoolKeys guards the keys of the two gossip pools, the region's
// LAN pool and the WAN pool between regions: a file that sets every one of
// them decodes to these values, and a file that sets none keeps the
// documented defaults. The pools' settings share one type in package
// cluster; the keys users write must not follow that shape.
func TestConfigPoolKeys(t *testing.T) {
	const (
		lanKey = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
		oldKey = "ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8="
		wanKey = "QEFCQ0RFRkdISUpLTE1OT1BRUlNUVVZXWFlaW1xdXl8="
	)
	yaml := `
dev: true
node_name: n1
region: eu
gossip_listen: 10.0.0.1:7946
gossip_advertise: 192.0.2.1:17946
join: [10.0.0.2:7946, herald-gossip.herald.svc:7946]
gossip_key: ` + lanKey + `
gossip_old_keys: [` + oldKey + `]
cluster:
  label: herald/eu-blue
  rejoin_interval: 7s
  dead_grace: 45s
wan_listen: 10.0.0.1:7947
wan_advertise: 198.51.100.1:17947
wan_join: [203.0.113.9:7947]
wan_key: ` + wanKey + `
federation:
  label: herald-wan-blue
`
	cfg, err := loadConfig(flagSet(t), func() []string { return []string{"HERALD_CONFIG=herald.yaml"} },
		func(string) ([]byte, error) { return []byte(yaml), nil })
	if err != nil {
		t.Fatal(err)
	}
	lan := []struct {
		key       string
		got, want any
	}{
		{"gossip_listen", cfg.GossipListen, "10.0.0.1:7946"},
		{"gossip_advertise", cfg.GossipAdvertise, "192.0.2.1:17946"},
		{"gossip_key", cfg.GossipKey, lanKey},
		{"cluster.label", cfg.Cluster.Label, "herald/eu-blue"},
		{"cluster.rejoin_interval", cfg.Cluster.RejoinInterval, 7 * time.Second},
		{"cluster.dead_grace", cfg.Cluster.DeadGrace, 45 * time.Second},
		{"wan_listen", cfg.WANListen, "10.0.0.1:7947"},
		{"wan_advertise", cfg.WANAdvertise, "198.51.100.1:17947"},
		{"wan_key", cfg.WANKey, wanKey},
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
		{"gossip_old_keys", cfg.GossipOldKeys, []string{oldKey}},
		{"wan_join", cfg.WANJoin, []string{"203.0.113.9:7947"}},
	}
	for _, c := range lists {
		if !slices.Equal(c.got, c.want) {
			t.Errorf("%s = %q, want %q", c.key, c.got, c.want)
		}
	}

	def, err := loadConfig(flagSet(t), func() []string { return []string{"HERALD_CONFIG=herald.yaml"} },
		func(string) ([]byte, error) { return []byte("dev: true\ngossip_listen: 127.0.0.1:0\nwan_listen: 127.0.0.1:0\n"), nil })
	if err != nil {
		t.Fatal(err)
	}
	if def.Cluster.Label != "" || def.Cluster.RejoinInterval != 30*time.Second || def.Cluster.DeadGrace != 30*time.Second ||
		def.Federation.Label != "" || def.GossipAdvertise != "" || def.WANAdvertise != "" || def.WANKey != "" {
		t.Errorf("pool defaults changed: cluster %+v, federation label %q, advertise %q/%q, wan_key %q",
			def.Cluster, def.Federation.Label, def.GossipAdvertise, def.WANAdvertise, def.WANKey)
	}
}
