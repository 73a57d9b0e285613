package cluster

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
)

type fedOption func(*FederationConfig)

// fedTestTuning scales the WAN preset down for loopback tests: a crashed
// node is declared dead in ~1–3 s instead of ~5–15 s.
func fedTestTuning() Tuning {
	return Tuning{
		ProbeInterval:     200 * time.Millisecond,
		ProbeTimeout:      100 * time.Millisecond,
		SuspicionMult:     5,
		GossipInterval:    50 * time.Millisecond,
		ReconnectInterval: 300 * time.Millisecond,
		PushPullInterval:  5 * time.Second,
	}
}

func regionURL(region string) string { return "https://" + region + ".push.test" }

// startFed starts one WAN member named "<node>.<region>" on 127.0.0.1 with a
// free port and closes it when the test ends.
func startFed(tb testing.TB, node, region string, opts ...fedOption) *Federation {
	tb.Helper()
	cfg := FederationConfig{
		PoolConfig: PoolConfig{
			NodeName: node + "." + region, Region: region,
			BindAddr: "127.0.0.1",
			Keys:     [][]byte{testKey},
			Tuning:   fedTestTuning(),
			Logger:   testLogger(node + "." + region),
		},
		RegionURL: regionURL(region),
	}
	for _, o := range opts {
		o(&cfg)
	}
	f, err := NewFederation(cfg)
	if err != nil {
		tb.Fatalf("NewFederation(%s): %v", cfg.NodeName, err)
	}
	tb.Cleanup(func() { _ = f.Close() })
	return f
}

func fedSeeds(fs ...*Federation) fedOption {
	return func(c *FederationConfig) {
		for _, f := range fs {
			c.Join = append(c.Join, f.GossipAddr())
		}
	}
}

// startRegions starts regions "a" and "b" with two nodes each (n1, n2; n2.b
// advertises a second URL), joined across regions through n1.a, and waits
// until every node sees all four alive.
func startRegions(tb testing.TB, opts ...fedOption) (a1, a2, b1, b2 *Federation) {
	tb.Helper()
	a1 = startFed(tb, "n1", "a", opts...)
	a2 = startFed(tb, "n2", "a", append(slices.Clone(opts), fedSeeds(a1))...)
	b1 = startFed(tb, "n1", "b", append(slices.Clone(opts), fedSeeds(a1))...)
	b2 = startFed(tb, "n2", "b", append(slices.Clone(opts), fedSeeds(b1),
		func(c *FederationConfig) { c.RegionURL = "https://b2.push.test" })...)
	waitFed(tb, []*Federation{a1, a2, b1, b2}, 10*time.Second)
	return a1, a2, b1, b2
}

// waitFed waits until every node sees exactly the given nodes, alive.
func waitFed(tb testing.TB, fs []*Federation, timeout time.Duration) {
	tb.Helper()
	var want []string
	for _, f := range fs {
		want = append(want, f.Local().Name)
	}
	slices.Sort(want)
	for _, f := range fs {
		eventually(tb, timeout, func() bool { return aliveNames(f) == strings.Join(want, ",") },
			"%s sees %v alive, has %+v", f.Local().Name, want, f.Members())
	}
}

func aliveNames(f *Federation) string {
	var names []string
	for _, m := range f.Members() {
		if m.Alive {
			names = append(names, m.Name)
		}
	}
	return strings.Join(names, ",")
}

func regionNamed(f *Federation, name string) (RegionStatus, bool) {
	for _, r := range f.Regions() {
		if r.Name == name {
			return r, true
		}
	}
	return RegionStatus{}, false
}

func wanMemberNamed(f *Federation, name string) (WANMember, bool) {
	for _, m := range f.Members() {
		if m.Name == name {
			return m, true
		}
	}
	return WANMember{}, false
}

func TestFederationRegionsAndAlternates(t *testing.T) {
	a1, a2, b1, b2 := startRegions(t)
	all := []*Federation{a1, a2, b1, b2}

	for _, f := range all {
		if addr := f.GossipAddr(); !strings.HasPrefix(addr, "127.0.0.1:") || strings.HasSuffix(addr, ":0") {
			t.Fatalf("GossipAddr = %q, want 127.0.0.1:<picked port>", addr)
		}
	}
	want := []RegionStatus{
		{Name: "a", URLs: []string{regionURL("a")}, Alive: 2, Serving: 2, State: StateAlive},
		{Name: "b", URLs: []string{regionURL("b"), "https://b2.push.test"}, Alive: 2, Serving: 2, State: StateAlive},
	}
	for _, f := range all {
		eventually(t, 5*time.Second, func() bool { return reflect.DeepEqual(f.Regions(), want) },
			"%s Regions = %+v, want %+v", f.Local().Name, f.Regions(), want)
		for _, peer := range all {
			m, _ := wanMemberNamed(f, peer.Local().Name)
			if w := peer.Local(); m.Region != w.Region || m.URL != w.URL || m.State != StateAlive || !m.Alive || m.Addr != w.Addr {
				t.Fatalf("%s sees %+v, want %+v", f.Local().Name, m, w)
			}
		}
	}
	for _, f := range []*Federation{a1, a2} {
		if got, want := f.Alternates(), []string{regionURL("b"), "https://b2.push.test"}; !slices.Equal(got, want) {
			t.Fatalf("%s Alternates = %v, want %v", f.Local().Name, got, want)
		}
	}
	for _, f := range []*Federation{b1, b2} {
		if got, want := f.Alternates(), []string{regionURL("a")}; !slices.Equal(got, want) {
			t.Fatalf("%s Alternates = %v, want %v", f.Local().Name, got, want)
		}
	}

	// A graceful leave is gossiped at once. The "leaving" state is best
	// effort (memberlist's leave message replaces the metadata update still
	// queued), so only its effect on membership is asserted.
	left := time.Now()
	if err := b2.Leave(2 * time.Second); err != nil {
		t.Fatalf("Leave: %v", err)
	}
	_ = b2.Close()
	for _, f := range []*Federation{a1, a2, b1} {
		eventually(t, 5*time.Second, func() bool {
			r, _ := regionNamed(f, "b")
			m, _ := wanMemberNamed(f, "n2.b")
			return r.Alive == 1 && r.Serving == 1 && slices.Equal(r.URLs, []string{regionURL("b")}) && !m.Alive
		}, "%s sees n2.b gone, has %+v", f.Local().Name, f.Members())
	}
	m, _ := wanMemberNamed(a1, "n2.b")
	t.Logf("graceful leave seen everywhere after %v (n1.a last saw state %q)", time.Since(left).Round(time.Millisecond), m.State)
	if got := a1.Alternates(); !slices.Equal(got, []string{regionURL("b")}) {
		t.Fatalf("a1 Alternates after n2.b left = %v", got)
	}
}

func TestFederationStates(t *testing.T) {
	a1, a2, b1, b2 := startRegions(t)
	regionState := func(f *Federation, name string) string {
		r, _ := regionNamed(f, name)
		return r.State
	}

	a1.SetState(StateEvacuating)
	a2.SetState(StateEvacuating)
	for _, f := range []*Federation{b1, b2} {
		eventually(t, 5*time.Second, func() bool {
			r, _ := regionNamed(f, "a")
			return r.State == StateEvacuating && r.Serving == 0 && r.Alive == 2 && r.URLs == nil &&
				len(f.Alternates()) == 0
		}, "%s sees region a evacuating, has %+v, alternates %v", f.Local().Name, f.Regions(), f.Alternates())
	}
	eventually(t, 5*time.Second, func() bool { return regionState(a1, "a") == StateEvacuating },
		"a1 sees its own region evacuating, has %+v", a1.Regions())
	if got := a1.Alternates(); len(got) != 2 { // an evacuating region still fails over to b
		t.Fatalf("a1 Alternates = %v", got)
	}

	// Draining nodes only: the region is draining, not evacuating.
	a1.SetState(StateDraining)
	a2.SetState(StateDraining)
	eventually(t, 5*time.Second, func() bool { return regionState(b1, "a") == StateDraining },
		"b1 sees region a draining, has %+v", b1.Regions())
	a2.SetState(StateEvacuating) // one evacuating member makes it evacuating
	eventually(t, 5*time.Second, func() bool { return regionState(b1, "a") == StateEvacuating },
		"b1 sees region a evacuating again, has %+v", b1.Regions())

	a1.SetState("bogus") // ignored
	if got := a1.Local().State; got != StateDraining {
		t.Fatalf("SetState(bogus) changed the state to %q", got)
	}

	a1.SetState(StateAlive)
	for _, f := range []*Federation{b1, b2} {
		eventually(t, 5*time.Second, func() bool {
			r, _ := regionNamed(f, "a")
			return r.State == StateAlive && r.Serving == 1 && slices.Equal(f.Alternates(), []string{regionURL("a")})
		}, "%s sees region a serving again, has %+v", f.Local().Name, f.Regions())
	}
}

func TestFederationSeen(t *testing.T) {
	a1, a2, b1, b2 := startRegions(t)

	a1.SetSeen(map[string]int64{"b": 100, "a": 50})
	a2.SetSeen(map[string]int64{"b": 90})
	for _, f := range []*Federation{b1, b2, a1} {
		eventually(t, 5*time.Second, func() bool {
			r, _ := regionNamed(f, "a")
			return maps.Equal(r.Seen, map[string]int64{"b": 90, "a": 50})
		}, "%s sees region a Seen {a:50 b:90}, has %+v", f.Local().Name, f.Regions())
	}
	if r, _ := regionNamed(b1, "b"); r.Seen != nil {
		t.Fatalf("region b reports nothing, has Seen %v", r.Seen)
	}

	// Bursts are coalesced (at most one update per MetaInterval) and the
	// last value always goes out.
	for i := int64(91); i <= 300; i++ {
		a2.SetSeen(map[string]int64{"b": i})
		a1.SetSeen(map[string]int64{"b": 400 - i, "a": i})
	}
	want := map[string]int64{"b": 100, "a": 300}
	for _, f := range []*Federation{b1, b2} {
		eventually(t, 5*time.Second, func() bool {
			r, _ := regionNamed(f, "a")
			m, _ := wanMemberNamed(f, "n2.a")
			return maps.Equal(r.Seen, want) && m.Seen["b"] == 300
		}, "%s sees region a Seen %v, has %+v", f.Local().Name, want, f.Regions())
	}

	// A member that stopped reporting an origin no longer counts for it.
	a1.SetSeen(nil)
	eventually(t, 5*time.Second, func() bool {
		r, _ := regionNamed(b1, "a")
		return maps.Equal(r.Seen, map[string]int64{"b": 300})
	}, "b1 sees region a Seen {b:300}, has %+v", b1.Regions())
}

func TestFederationRegionCrash(t *testing.T) {
	const forgetAfter = 2 * time.Second
	a1, a2, b1, b2 := startRegions(t, func(c *FederationConfig) { c.Tuning.ReconnectTimeout = forgetAfter })
	a1.SetSeen(map[string]int64{"a": 1})

	crash := time.Now()
	_ = a1.Close() // Shutdown without Leave: a crash, as far as peers can tell
	_ = a2.Close()
	const bound = 10 * time.Second // expected ~1–3 s with fedTestTuning
	var detected [2]time.Duration
	for i, f := range []*Federation{b1, b2} {
		eventually(t, bound, func() bool {
			r, ok := regionNamed(f, "a")
			return ok && r.State == StateDown && r.Alive == 0 && r.Serving == 0 && r.URLs == nil && r.Seen == nil
		}, "%s sees region a down, has %+v", f.Local().Name, f.Regions())
		detected[i] = time.Since(crash)
		if got := f.Alternates(); len(got) != 0 {
			t.Fatalf("%s Alternates with region a down = %v", f.Local().Name, got)
		}
		if r, _ := regionNamed(f, "b"); r.State != StateAlive || r.Serving != 2 {
			t.Fatalf("%s sees its own region %+v", f.Local().Name, r)
		}
	}
	t.Logf("region crash detected after %v (n1.b) and %v (n2.b), bound %v, tuning %+v",
		detected[0].Round(time.Millisecond), detected[1].Round(time.Millisecond), bound, b1.cfg.Tuning)

	// Listed as down for ReconnectTimeout, then forgotten.
	eventually(t, forgetAfter+5*time.Second, func() bool {
		_, ok := regionNamed(b1, "a")
		return !ok
	}, "b1 forgets region a, has %+v", b1.Regions())
	if gone := time.Since(crash); gone < forgetAfter {
		t.Fatalf("region a forgotten %v after the crash, before ReconnectTimeout %v", gone, forgetAfter)
	}
	if got := aliveNames(b1); got != "n1.b,n2.b" || len(b1.Members()) != 2 {
		t.Fatalf("b1 members after forgetting: %+v", b1.Members())
	}
}

// The WANTuning preset itself (1s probes): a region of two nodes that
// crashes is down for the other region within the documented ~5–15 s.
func TestFederationWANPresetDetection(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for the WAN preset's failure detector (~10 s)")
	}
	preset := func(c *FederationConfig) { c.Tuning = Tuning{} }
	a1, a2, b1, b2 := startRegions(t, preset)
	crash := time.Now()
	_ = a1.Close()
	_ = a2.Close()
	const bound = 20 * time.Second // documented 5–15 s, plus a loaded machine's margin
	var detected [2]time.Duration
	for i, f := range []*Federation{b1, b2} {
		eventually(t, bound, func() bool {
			r, _ := regionNamed(f, "a")
			return r.State == StateDown && len(f.Alternates()) == 0
		}, "%s sees region a down, has %+v", f.Local().Name, f.Regions())
		detected[i] = time.Since(crash)
	}
	t.Logf("WANTuning: region crash detected after %v (n1.b) and %v (n2.b)",
		detected[0].Round(time.Millisecond), detected[1].Round(time.Millisecond))
	if detected[0] < 3*time.Second {
		t.Fatalf("detected after %v: faster than the preset allows (SuspicionMult*ProbeInterval = 4 s)", detected[0])
	}
}

func TestFederationCannotJoinWithoutCredentials(t *testing.T) {
	a1 := startFed(t, "n1", "a")
	b1 := startFed(t, "n1", "b", fedSeeds(a1))
	pool := []*Federation{a1, b1}
	waitFed(t, pool, 10*time.Second)
	unchanged := func(t *testing.T) {
		t.Helper()
		for _, f := range pool {
			if got := aliveNames(f); got != "n1.a,n1.b" || len(f.Members()) != 2 || len(f.Regions()) != 2 {
				t.Fatalf("%s members %+v, regions %+v", f.Local().Name, f.Members(), f.Regions())
			}
		}
	}

	other := make([]byte, 32)
	copy(other, "another key, another federation.")
	cases := []struct {
		name string
		opt  fedOption
	}{
		{"wrong key", func(c *FederationConfig) { c.Keys = [][]byte{other} }},
		{"no key in dev mode", func(c *FederationConfig) { c.Keys, c.Dev = nil, true }},
		{"other label", func(c *FederationConfig) { c.Label = "herald-wan-staging" }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			x := startFed(t, "x", "evil", tc.opt, fedSeeds(a1), func(c *FederationConfig) { c.RejoinInterval = 50 * time.Millisecond })
			if _, err := x.ml.Join([]string{b1.GossipAddr()}); err == nil {
				t.Fatalf("Join succeeded")
			}
			eventually(t, 5*time.Second, func() bool { return x.joinFailures.Load() >= 3 }, "three failed join attempts")
			if a, f := x.joinAttempts.Load(), x.joinFailures.Load(); a != f {
				t.Fatalf("intruder joined: %d attempts, %d failures", a, f)
			}
			unchanged(t)
			if got := aliveNames(x); got != "x.evil" {
				t.Fatalf("intruder sees %s", got)
			}
		})
	}

	// A LAN node of region a, with the same key, cannot join the WAN pool
	// (labels "herald/a" and "herald-wan"), nor a WAN node its LAN pool.
	t.Run("LAN node", func(t *testing.T) {
		lan := startNode(t, "lan", func(c *Config) {
			c.Region, c.Join, c.RejoinInterval = "a", []string{a1.GossipAddr()}, 50*time.Millisecond
		})
		eventually(t, 5*time.Second, func() bool { return lan.Stats().JoinFailures >= 3 }, "three failed LAN join attempts")
		if s := lan.Stats(); s.JoinFailures != s.JoinAttempts || len(lan.Members()) != 1 {
			t.Fatalf("LAN node joined the WAN pool: %+v, %+v", s, lan.Members())
		}
		if _, err := a1.ml.Join([]string{lan.Local().GossipAddr}); err == nil {
			t.Fatalf("WAN node joined a LAN pool")
		}
		unchanged(t)
		if len(lan.Members()) != 1 {
			t.Fatalf("LAN members: %+v", lan.Members())
		}
	})
}

func TestFederationConfigValidation(t *testing.T) {
	base := FederationConfig{PoolConfig: PoolConfig{NodeName: "n.r", Region: "r", Dev: true, BindAddr: "127.0.0.1"}}
	cases := map[string]func(*FederationConfig){
		"NodeName is required":  func(c *FederationConfig) { c.NodeName = "" },
		"NodeName":              func(c *FederationConfig) { c.NodeName = strings.Repeat("n", MaxNodeNameLen+1) },
		"Region is required":    func(c *FederationConfig) { c.Region = "" },
		"Region \"":             func(c *FederationConfig) { c.Region = strings.Repeat("r", MaxRegionLen+1) },
		"RegionURL":             func(c *FederationConfig) { c.RegionURL = strings.Repeat("u", MaxURLLen+1) },
		"metadata":              func(c *FederationConfig) { c.RegionURL = strings.Repeat(`"`, MaxURLLen) },
		"Keys is empty":         func(c *FederationConfig) { c.Dev = false },
		"Keys[0]":               func(c *FederationConfig) { c.Keys = [][]byte{make([]byte, 5)} },
		"Join seed":             func(c *FederationConfig) { c.Join = []string{"no-port"} },
		"must not start with":   func(c *FederationConfig) { c.Label = "herald/r" },
		"Label is 300 bytes":    func(c *FederationConfig) { c.Label = strings.Repeat("l", 300) },
		"ProbeTimeout":          func(c *FederationConfig) { c.Tuning.ProbeTimeout = time.Hour },
		"RejoinInterval":        func(c *FederationConfig) { c.RejoinInterval = -1 },
		"BindPort 70000":        func(c *FederationConfig) { c.BindPort = 70000 },
		"NodeName \"bad\\nname": func(c *FederationConfig) { c.NodeName = "bad\nname" },
	}
	for want, mut := range cases {
		cfg := base
		mut(&cfg)
		if f, err := NewFederation(cfg); !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), want) {
			if f != nil {
				_ = f.Close()
			}
			t.Errorf("%s: NewFederation = %v, want ErrConfig naming it", want, err)
		}
	}

	got, err := base.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	if got.Label != "herald-wan" || got.RejoinInterval != 30*time.Second || got.Tuning != WANTuning() {
		t.Fatalf("defaults: label %q, rejoin %v, tuning %+v", got.Label, got.RejoinInterval, got.Tuning)
	}
	partial := base
	partial.Tuning = Tuning{ProbeInterval: 2 * time.Second}
	if got, _ := partial.withDefaults(); got.Tuning.ProbeInterval != 2*time.Second || got.Tuning.SuspicionMult != WANTuning().SuspicionMult {
		t.Fatalf("partial tuning: %+v", got.Tuning)
	}
}

func TestFederationSeenLimit(t *testing.T) {
	f := startFed(t, "n1", "eu-west-1", func(c *FederationConfig) {
		c.RegionURL = "https://eu-west-1.push.example.com:8443" // 40 bytes
	})
	// Realistic: 10-byte origin names, 13-digit unix ms.
	seen := make(map[string]int64)
	for i := range 30 {
		seen[fmt.Sprintf("region-%03d", i)] = 1_760_000_000_000 + int64(i)
	}
	f.SetSeen(seen)
	kept := f.Local().Seen
	t.Logf("%d of %d 10-byte origins fit next to a 40-byte URL", len(kept), len(seen))
	if len(kept) != 15 {
		t.Fatalf("kept %d origins, the SetSeen doc says 15", len(kept))
	}
	keys := slices.Sorted(maps.Keys(kept))
	if keys[0] != "region-000" || keys[len(keys)-1] != fmt.Sprintf("region-%03d", len(kept)-1) {
		t.Fatalf("kept origins are not the first in name order: %v", keys)
	}
	for _, st := range []string{StateEvacuating, StateAlive} {
		f.SetState(st)
		if b := (fedDelegate{f}).NodeMeta(memberlist.MetaMaxSize); len(b) == 0 || len(b) > memberlist.MetaMaxSize {
			t.Fatalf("NodeMeta in state %s: %d bytes", st, len(b))
		}
	}

	// Long names, and names that cannot be regions, are left out.
	huge := map[string]int64{"": 1, strings.Repeat("x", MaxRegionLen+1): 2, "bad\x00": 3}
	for i := range 50 {
		huge[fmt.Sprintf("%02d-%s", i, strings.Repeat("o", 60))] = -1 << 62
	}
	f.SetSeen(huge)
	got := f.Local().Seen
	if len(got) == 0 || len(got) >= 50 {
		t.Fatalf("kept %d of 50 long origins", len(got))
	}
	for k := range got {
		if !validOrigin(k) {
			t.Fatalf("kept invalid origin %q", k)
		}
	}
	if b := (fedDelegate{f}).NodeMeta(memberlist.MetaMaxSize); len(b) == 0 {
		t.Fatalf("NodeMeta empty after SetSeen(huge)")
	}
	f.SetSeen(nil)
	if got := f.Local().Seen; got != nil {
		t.Fatalf("SetSeen(nil) left %v", got)
	}
}

func TestDecodeWANMeta(t *testing.T) {
	good := wanMeta{V: 1, Region: "a", URL: "https://a", State: StateAlive, Seen: map[string]int64{"b": 5}}
	if m, ok := decodeWANMeta(good.encode()); !ok || !reflect.DeepEqual(m, good) {
		t.Fatalf("round trip: %+v, %v", m, ok)
	}
	bad := map[string]string{
		"empty":          "",
		"garbage":        "garbage",
		"null":           "null",
		"no version":     `{"r":"a","s":"alive"}`,
		"no region":      `{"v":1,"s":"alive"}`,
		"long region":    `{"v":1,"r":"` + strings.Repeat("r", MaxRegionLen+1) + `","s":"alive"}`,
		"long url":       `{"v":1,"r":"a","u":"` + strings.Repeat("u", MaxURLLen+1) + `","s":"alive"}`,
		"long state":     `{"v":1,"r":"a","s":"` + strings.Repeat("s", maxWANStateLen+1) + `"}`,
		"seen not a map": `{"v":1,"r":"a","s":"alive","h":[1]}`,
		"seen not ints":  `{"v":1,"r":"a","s":"alive","h":{"b":"x"}}`,
		"oversized":      `{"v":1,"r":"a","s":"alive","x":"` + strings.Repeat("x", 512) + `"}`,
		"control char":   `{"v":1,"r":"a\u0001","s":"alive"}`,
	}
	for name, b := range bad {
		if m, ok := decodeWANMeta([]byte(b)); ok {
			t.Errorf("%s: decoded %+v", name, m)
		}
	}
	m, ok := decodeWANMeta([]byte(`{"v":2,"r":"a","s":"future","h":{"":1,"b":2},"new":true}`))
	if !ok || m.State != "future" || !maps.Equal(m.Seen, map[string]int64{"b": 2}) {
		t.Fatalf("forward-compatible meta: %+v, %v", m, ok)
	}
}

// Members injected through the event delegate: garbled metadata, unknown
// states, duplicate URLs across regions, members going down.
func TestFederationAggregation(t *testing.T) {
	f := startFed(t, "n1", "a", func(c *FederationConfig) { c.Keys, c.Dev = nil, true })
	ev := fedEvents{f}
	port := uint16(1)
	join := func(name string, meta []byte) {
		port++
		ev.NotifyJoin(&memberlist.Node{Name: name, Addr: net.IPv4(127, 0, 0, 9), Port: port, Meta: meta})
	}
	meta := func(region, url, state string, seen map[string]int64) []byte {
		return wanMeta{V: 1, Region: region, URL: url, State: state, Seen: seen}.encode()
	}
	join("ghost", []byte("garbage"))
	join("n1.c", meta("c", "https://y", StateAlive, map[string]int64{"a": 7, "c": 9}))
	join("n2.c", meta("c", "https://x", StateAlive, map[string]int64{"a": 5}))
	join("n3.c", meta("c", "https://z", StateDraining, map[string]int64{"a": 1}))
	join("n1.d", meta("d", "https://x", StateAlive, nil))
	join("n1.e", meta("e", "https://e", StateEvacuating, nil))
	join("n2.e", meta("e", "https://e", StateAlive, nil))
	join("n1.f", meta("f", "https://f", "future", nil))
	join("n1.g", meta("g", "https://g", StateAlive, nil))
	ev.NotifyUpdate(&memberlist.Node{Name: "n2.e", Addr: net.IPv4(127, 0, 0, 9), Port: 100,
		Meta: meta("e", "https://e", StateDraining, nil)})
	ev.NotifyLeave(&memberlist.Node{Name: "n1.g"})
	ev.NotifyLeave(&memberlist.Node{Name: "n1.g"}) // duplicate: no effect

	if g, ok := wanMemberNamed(f, "ghost"); !ok || g.Region != "" || g.State != "" || !g.Alive {
		t.Fatalf("ghost = %+v, %v", g, ok)
	}
	want := []RegionStatus{
		{Name: "a", URLs: []string{regionURL("a")}, Alive: 1, Serving: 1, State: StateAlive},
		{Name: "c", URLs: []string{"https://x", "https://y"}, Alive: 3, Serving: 2, State: StateAlive,
			Seen: map[string]int64{"a": 1, "c": 9}},
		{Name: "d", URLs: []string{"https://x"}, Alive: 1, Serving: 1, State: StateAlive},
		{Name: "e", Alive: 2, State: StateEvacuating},
		{Name: "f", Alive: 1, State: StateDraining},
		{Name: "g", State: StateDown},
	}
	if got := f.Regions(); !reflect.DeepEqual(got, want) {
		t.Fatalf("Regions =\n%+v\nwant\n%+v", got, want)
	}
	if got, want := f.Alternates(), []string{"https://x", "https://y"}; !slices.Equal(got, want) {
		t.Fatalf("Alternates = %v, want %v", got, want)
	}
	if g, _ := wanMemberNamed(f, "n1.g"); g.Alive || g.Region != "g" || g.State != StateAlive {
		t.Fatalf("n1.g = %+v", g)
	}
	f.forget(time.Now().Add(time.Hour)) // past ReconnectTimeout
	if _, ok := regionNamed(f, "g"); ok {
		t.Fatalf("region g not forgotten: %+v", f.Regions())
	}
}

func TestFederationDNSSeeds(t *testing.T) {
	b := startFed(t, "n1", "b", func(c *FederationConfig) { c.BindAddr = "127.0.0.2" })
	_, port, err := splitSeed(b.GossipAddr())
	if err != nil {
		t.Fatal(err)
	}
	var answer atomic.Value
	answer.Store([]string{"127.0.0.3"}) // nothing listens there
	var lookups atomic.Int32
	x := startFed(t, "n1", "a", func(c *FederationConfig) {
		c.Join = []string{fmt.Sprintf("wan-seeds.herald.test:%d", port)}
		c.RejoinInterval = 50 * time.Millisecond
		c.Resolver = func(_ context.Context, host string) ([]string, error) {
			lookups.Add(1)
			if host != "wan-seeds.herald.test" {
				return nil, fmt.Errorf("unexpected host %q", host)
			}
			return answer.Load().([]string), nil
		}
	})
	if x.joinFailures.Load() == 0 || len(x.Members()) != 1 {
		t.Fatalf("first join should fail: %d failures, members %+v", x.joinFailures.Load(), x.Members())
	}
	answer.Store([]string{"127.0.0.2"})
	waitFed(t, []*Federation{b, x}, 5*time.Second)
	if lookups.Load() < 2 {
		t.Fatalf("lookups = %d", lookups.Load())
	}
}

func TestFederationCloseStopsGoroutines(t *testing.T) {
	base := runtime.NumGoroutine()
	func() {
		a := startFed(t, "n1", "a")
		b := startFed(t, "n1", "b", fedSeeds(a))
		waitFed(t, []*Federation{a, b}, 10*time.Second)
		a.SetSeen(map[string]int64{"b": 1})
		b.SetState(StateDraining)
		eventually(t, 5*time.Second, func() bool {
			r, _ := regionNamed(a, "b")
			return r.State == StateDraining
		}, "a sees b draining")
		if err := b.Leave(2 * time.Second); err != nil {
			t.Fatal(err)
		}
		for _, f := range []*Federation{a, b} {
			if err := f.Close(); err != nil {
				t.Fatal(err)
			}
			if err := f.Close(); err != nil { // idempotent
				t.Fatal(err)
			}
			if err := f.Leave(time.Second); !errors.Is(err, ErrClosed) {
				t.Fatalf("Leave after Close = %v", err)
			}
			f.SetSeen(map[string]int64{"x": 1}) // harmless after Close
			f.SetState(StateAlive)
		}
	}()
	deadline := time.Now().Add(15 * time.Second)
	for runtime.NumGoroutine() > base {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("goroutines: %d, baseline %d\n%s", runtime.NumGoroutine(), base, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond)
	}
}
