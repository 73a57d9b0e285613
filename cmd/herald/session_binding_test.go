package main

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"slices"
	"testing"
	"time"

	"github.com/heraldpush/herald/cluster"
	"github.com/heraldpush/herald/push"
	"github.com/heraldpush/herald/push/auth"
	"github.com/heraldpush/herald/push/redistest"
)

// TestSessionTakeoverNeedsTheOwningPrincipal is the forged-cursor attack
// of issue 18 on a real two-node cluster (memberlist over loopback, one
// Redis): alice streams topic "shared" on node A; mallory, who may
// subscribe to "shared" too, learns alice's session (her cursor, or the id
// presence shows) and presents it on node B — once as alice's exact
// cursor, once spliced into a cursor of his own. Neither may end, move or
// alter alice's session: mallory gets sessions of his own, alice's record
// still names node A and only her topics, and her stream keeps receiving.
// Then alice herself resumes on node B with the same cursor, which must
// take her session over (the control that shows the check can fail).
func TestSessionTakeoverNeedsTheOwningPrincipal(t *testing.T) {
	if testing.Short() {
		t.Skip("runs redis-server and two gossiping nodes")
	}
	rs := redistest.StartServer(t)
	aliceKey, aliceHash, err := auth.GenerateAPIKey()
	if err != nil {
		t.Fatal(err)
	}
	malloryKey, malloryHash, err := auth.GenerateAPIKey()
	if err != nil {
		t.Fatal(err)
	}
	gossipKey := cluster.GenerateKey()
	node := func(name, join string) *Main {
		return MustRunMain(t, func(c *Config) {
			c.Dev = false
			c.NodeName = name
			c.Redis = rs.URL()
			c.RedisPrefix = "binding"
			c.GossipListen = "127.0.0.1:0"
			c.GossipKey = gossipKey
			if join != "" {
				c.Join = []string{join}
			}
			c.Cluster.RebalanceWindow = 0
			c.Auth.APIKeys = []auth.APIKeyConfig{
				{ID: "alice", Hash: aliceHash, Subscribe: []string{"shared", "alice.*"}, Publish: []string{"*"}},
				{ID: "mallory", Hash: malloryHash, Subscribe: []string{"shared"}},
			}
		})
	}
	a := node("node-a", "")
	b := node("node-b", a.Cluster.Local().GossipAddr)
	alice := http.Header{"Authorization": {"Bearer " + aliceKey}}
	mallory := http.Header{"Authorization": {"Bearer " + malloryKey}}

	victim := openTelStream(t, a.URL(), "topic=shared", alice)
	vh := victim.hello(t)
	mustPublishAs(t, a.URL(), "shared", "one", alice)
	ev := victim.next(t, 10*time.Second)
	if ev.Data != "one" {
		t.Fatalf("victim got %q, want one", ev.Data)
	}
	aliceCursor := ev.ID
	// Node B knows alice's session before the attack (the attack does not
	// race gossip: it is refused with full knowledge).
	waitSession(t, b, vh.Session, func(r sessionView) bool { return r.Node == "node-a" && !r.Ended })

	// 1. mallory presents alice's exact cursor on node B.
	copied := openTelStream(t, b.URL(), "topic=shared&last_event_id="+url.QueryEscape(aliceCursor), mallory)
	if h := copied.hello(t); h.Session == vh.Session {
		t.Fatalf("mallory resumed alice's session %s with her cursor", vh.Session)
	}
	// 2. mallory splices alice's session id into a cursor of his own.
	own := openTelStream(t, b.URL(), "topic=shared", mallory)
	_ = own.hello(t)
	mustPublishAs(t, a.URL(), "shared", "two", alice)
	if ev := victim.next(t, 10*time.Second); ev.Data != "two" {
		t.Fatalf("victim got %q, want two", ev.Data)
	}
	mev := own.next(t, 10*time.Second)
	if mev.Data != "two" {
		t.Fatalf("mallory got %q, want two", mev.Data)
	}
	spliced := spliceSession(t, mev.ID, aliceCursor)
	forged := openTelStream(t, b.URL(), "topic=shared&last_event_id="+url.QueryEscape(spliced), mallory)
	fh := forged.hello(t)
	if fh.Session == vh.Session {
		t.Fatalf("mallory took alice's session %s with a spliced cursor", vh.Session)
	}

	// Node A has heard of mallory's newest session (so it has also heard
	// any claim his connects made); alice's record is untouched everywhere.
	waitSession(t, a, fh.Session, func(r sessionView) bool { return r.Node == "node-b" && !r.Ended })
	for _, m := range []*Main{a, b} {
		r := waitSession(t, m, vh.Session, func(sessionView) bool { return true })
		if r.Node != "node-a" || r.Ended || !slices.Equal(r.Topics, []string{"shared"}) {
			t.Fatalf("alice's session as node %s sees it: %+v, want owned by node-a, live, topics [shared]", m.Config.NodeName, r)
		}
	}
	mustPublishAs(t, a.URL(), "shared", "three", alice)
	if ev := victim.next(t, 10*time.Second); ev.Data != "three" {
		t.Fatalf("victim got %q after the attack, want three", ev.Data)
	}

	// Control: alice's own resume on node B takes her session over, and
	// node A ends her old stream.
	again := openTelStream(t, b.URL(), "topic=shared&last_event_id="+url.QueryEscape(aliceCursor), alice)
	if h := again.hello(t); h.Session != vh.Session {
		t.Fatalf("alice's own resume got session %s, want %s", h.Session, vh.Session)
	}
	victimEnded(t, victim)

	// Presence shows a caller only the topics it may subscribe to: mallory
	// sees alice's two-topic session on "shared" without her private topic.
	both := openTelStream(t, a.URL(), "topic=shared&topic=alice.private", alice)
	bh := both.hello(t)
	waitSession(t, b, bh.Session, func(r sessionView) bool { return !r.Ended })
	for _, tc := range []struct {
		who  string
		cred http.Header
		want []string
	}{{"mallory", mallory, []string{"shared"}}, {"alice", alice, []string{"alice.private", "shared"}}} {
		topics, found := presenceTopics(t, b.URL(), "shared", bh.Session, tc.cred)
		if !found || !slices.Equal(topics, tc.want) {
			t.Fatalf("%s's presence of alice's session: found %v, topics %v, want %v", tc.who, found, topics, tc.want)
		}
	}
}

// presenceTopics returns the topics the public presence API shows the
// caller for session on topic.
func presenceTopics(t *testing.T, base, topic, session string, h http.Header) ([]string, bool) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, base+"/v1/topics/"+topic+"/presence", nil)
	req.Header = h.Clone()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct {
		Sessions []sessionView `json:"sessions"`
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("presence: %d", resp.StatusCode)
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatal(err)
	}
	for _, r := range out.Sessions {
		if r.Session == session {
			return r.Topics, true
		}
	}
	return nil, false
}

// sessionView is the admin API's session record.
type sessionView struct {
	Session string   `json:"session"`
	Node    string   `json:"node"`
	Topics  []string `json:"topics"`
	Ended   bool     `json:"ended"`
}

// waitSession polls m's admin API until session's record satisfies ok.
func waitSession(t *testing.T, m *Main, session string, ok func(sessionView) bool) sessionView {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	var last sessionView
	for time.Now().Before(deadline) {
		resp, err := http.Get(m.AdminURL() + "/v1/sessions/" + session)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			if err := json.Unmarshal(body, &last); err != nil {
				t.Fatalf("session %s: %v in %s", session, err, body)
			}
			if ok(last) {
				return last
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("session %s on %s: last record %+v never matched", session, m.Config.NodeName, last)
	return last
}

// spliceSession returns cursor own with the session id of victim (bytes
// 7..14 of cursor versions 2 and 3), keeping own's binding.
func spliceSession(t *testing.T, own, victim string) string {
	t.Helper()
	o, err1 := base64.RawURLEncoding.DecodeString(own)
	v, err2 := base64.RawURLEncoding.DecodeString(victim)
	if err := errors.Join(err1, err2); err != nil || len(o) < 15 || len(v) < 15 || o[0] < 2 || v[0] < 2 {
		t.Fatalf("cursors %q %q carry no session: %v", own, victim, err)
	}
	copy(o[7:15], v[7:15])
	return base64.RawURLEncoding.EncodeToString(o)
}

// victimEnded waits for the server to end s (EOF after its last event).
func victimEnded(t *testing.T, s *telStream) {
	t.Helper()
	tm := time.AfterFunc(15*time.Second, s.cancel)
	defer tm.Stop()
	for {
		ev, err := s.dec.Next()
		if err != nil {
			if !tm.Stop() {
				t.Fatal("the taken-over stream was not ended within 15s")
			}
			return
		}
		if ev.Type == push.EventReset {
			t.Fatalf("taken-over stream got a reset: %+v", ev)
		}
	}
}

// mustPublishAs publishes data to topic with the caller's credentials.
func mustPublishAs(t *testing.T, base, topic, data string, h http.Header) {
	t.Helper()
	if st, body := telPublish(t, base, topic, data, h); st != http.StatusCreated {
		t.Fatalf("publish %s: %d %v", topic, st, body)
	}
}
