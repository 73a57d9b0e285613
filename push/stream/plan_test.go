package stream_test

import (
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/heraldpush/herald/push"
	"github.com/heraldpush/herald/push/stream"
)

// at is a client cursor over topic "t" and origins local (and remote when
// given): the offsets it read, in epoch ep of every stream.
func at(t *testing.T, ep string, local uint64, remote ...uint64) string {
	t.Helper()
	origins := []string{"local"}
	if len(remote) > 0 {
		origins = append(origins, "remote")
	}
	c, err := push.NewCursor([]string{"t"}, origins)
	if err != nil {
		t.Fatal(err)
	}
	c.SetAt(c.Index("t", "local"), push.Position{Epoch: ep, Offset: local})
	if len(remote) > 0 {
		c.SetAt(c.Index("t", "remote"), push.Position{Epoch: ep, Offset: remote[0]})
	}
	return c.String()
}

// TestPlan covers every branch of the resume decision, with nothing but a
// cursor and the stores' descriptions: where each stream starts, what is
// replayed, what is reset and why.
func TestPlan(t *testing.T) {
	info := func(origin, ep string, first, last uint64) push.StreamInfo {
		n := int64(0)
		if last >= first && first > 0 {
			n = int64(last - first + 1)
		}
		return push.StreamInfo{Topic: "t", Origin: origin, Epoch: ep, First: first, Last: last, Length: n, EpochStart: 1}
	}
	changed := info("local", "e2", 1, 7)
	changed.EpochStart = 5 // e2 began at offset 5 and inherited nothing the client read
	// e2 forked from e1 at 7 (ADR 0024).
	forked := info("local", "e2", 1, 12)
	forked.EpochStart, forked.Parent, forked.Lineage = 8, "e1", []push.Fork{{Epoch: "e1", At: 7}}
	forkedRemote := forked
	forkedRemote.Origin = "remote"
	// e3 forked from e2 at 3, e2 from e1 at 5: a snapshot rolled e2 back
	// below e1's fork.
	twice := info("local", "e3", 1, 9)
	twice.EpochStart, twice.Parent, twice.Lineage = 4, "e2", []push.Fork{{Epoch: "e2", At: 3}, {Epoch: "e1", At: 5}}
	type slot struct {
		origin string
		pos    push.Position
		upto   uint64
	}
	for _, tc := range []struct {
		name    string
		cursor  string // "" none; "!" malformed
		from    string
		remote  bool
		infos   []push.StreamInfo
		want    []slot
		resets  []push.StreamReset
		replays bool
	}{
		{name: "fresh starts at the head", infos: []push.StreamInfo{info("local", "e1", 1, 10)},
			want: []slot{{"local", push.Position{Epoch: "e1", Offset: 10}, 0}}},
		{name: "fresh from earliest replays everything", from: "earliest", infos: []push.StreamInfo{info("local", "e1", 1, 10)},
			want: []slot{{"local", push.Position{Epoch: "e1"}, 10}}, replays: true},
		{name: "resume within retention replays the rest", cursor: "local:e1:4", infos: []push.StreamInfo{info("local", "e1", 1, 10)},
			want: []slot{{"local", push.Position{Epoch: "e1", Offset: 4}, 10}}, replays: true},
		{name: "resume at the head replays nothing", cursor: "local:e1:10", infos: []push.StreamInfo{info("local", "e1", 1, 10)},
			want: []slot{{"local", push.Position{Epoch: "e1", Offset: 10}, 10}}},
		{name: "older than retention is a trimmed reset, then the retained stream", cursor: "local:e1:2", infos: []push.StreamInfo{info("local", "e1", 6, 10)},
			want: []slot{{"local", push.Position{Epoch: "e1", Offset: 5}, 10}}, replays: true,
			resets: []push.StreamReset{{Topic: "t", Origin: "local", Reason: push.ResetTrimmed, LostFrom: 3, LostTo: 5, Epoch: "e1", ContinueFrom: 6}}},
		{name: "ahead of a local stream is an ahead reset", cursor: "local:e1:12", infos: []push.StreamInfo{info("local", "e1", 1, 10)},
			want:   []slot{{"local", push.Position{Epoch: "e1", Offset: 10}, 0}},
			resets: []push.StreamReset{{Topic: "t", Origin: "local", Reason: push.ResetAhead, LostFrom: 11, LostTo: 12, Epoch: "e1", ContinueFrom: 11}}},
		{name: "ahead of a remote replica keeps the position", cursor: "remote:e1:3:12", remote: true,
			infos:  []push.StreamInfo{info("local", "e1", 1, 3), info("remote", "e1", 1, 10)},
			want:   []slot{{"local", push.Position{Epoch: "e1", Offset: 3}, 3}, {"remote", push.Position{Epoch: "e1", Offset: 12}, 0}},
			resets: []push.StreamReset{{Topic: "t", Origin: "remote", Reason: push.ResetReplicaBehind, LostFrom: 11, LostTo: 12, Epoch: "e1", ContinueFrom: 13}}},
		{name: "an epoch in no lineage replays the whole retained stream", cursor: "local:e1:9", infos: []push.StreamInfo{changed},
			want:   []slot{{"local", push.Position{Epoch: "e2", Offset: 0}, 7}},
			resets: []push.StreamReset{{Topic: "t", Origin: "local", Reason: push.ResetEpochChanged, LostFrom: 10, Epoch: "e2", ContinueFrom: 1}}, replays: true},
		{name: "an ancestor below its fork continues with no reset", cursor: "local:e1:5", infos: []push.StreamInfo{forked},
			want: []slot{{"local", push.Position{Epoch: "e2", Offset: 5}, 12}}, replays: true},
		{name: "an ancestor at its fork continues with no reset", cursor: "local:e1:7", infos: []push.StreamInfo{forked},
			want: []slot{{"local", push.Position{Epoch: "e2", Offset: 7}, 12}}, replays: true},
		{name: "an ancestor past its fork is reset exactly", cursor: "local:e1:9", infos: []push.StreamInfo{forked},
			want:   []slot{{"local", push.Position{Epoch: "e2", Offset: 7}, 12}},
			resets: []push.StreamReset{{Topic: "t", Origin: "local", Reason: push.ResetEpochChanged, LostFrom: 8, LostTo: 9, Epoch: "e2", ContinueFrom: 8}}, replays: true},
		{name: "a grandparent is bounded by the deeper fork", cursor: "local:e1:5", infos: []push.StreamInfo{twice},
			want:   []slot{{"local", push.Position{Epoch: "e3", Offset: 3}, 9}},
			resets: []push.StreamReset{{Topic: "t", Origin: "local", Reason: push.ResetEpochChanged, LostFrom: 4, LostTo: 5, Epoch: "e3", ContinueFrom: 4}}, replays: true},
		{name: "an ancestor of a remote replica continues with no reset", cursor: "remote:e1:3:6", remote: true,
			infos: []push.StreamInfo{info("local", "e1", 1, 3), forkedRemote},
			want:  []slot{{"local", push.Position{Epoch: "e1", Offset: 3}, 3}, {"remote", push.Position{Epoch: "e2", Offset: 6}, 12}}, replays: true},
		{name: "a malformed cursor from a browser resets to the head", cursor: "!", infos: []push.StreamInfo{info("local", "e1", 1, 10)},
			want:   []slot{{"local", push.Position{Epoch: "e1", Offset: 10}, 0}},
			resets: []push.StreamReset{{Topic: "t", Origin: "local", Reason: push.ResetInvalidCursor, Epoch: "e1", ContinueFrom: 11}}},
		{name: "a malformed cursor from earliest resets and replays all", cursor: "!", from: "earliest", infos: []push.StreamInfo{info("local", "e1", 3, 10)},
			want:   []slot{{"local", push.Position{Epoch: "e1"}, 10}},
			resets: []push.StreamReset{{Topic: "t", Origin: "local", Reason: push.ResetInvalidCursor, Epoch: "e1", ContinueFrom: 3}}, replays: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			origins := []string{"local"}
			if tc.remote {
				origins = append(origins, "remote")
			}
			cur, err := push.NewCursor([]string{"t"}, origins)
			if err != nil {
				t.Fatal(err)
			}
			r := stream.Resume{From: tc.from, Local: "local"}
			switch tc.cursor {
			case "":
			case "!":
				r.Discard = push.ResetInvalidCursor
			default:
				r.Parsed, err = push.ParseCursor(parseSpec(t, tc.cursor), []string{"t"}, origins)
				if err != nil {
					t.Fatal(err)
				}
			}
			d := stream.Plan(cur, r, tc.infos)
			for _, w := range tc.want {
				i := cur.Index("t", w.origin)
				if got := cur.At(i); got != w.pos {
					t.Errorf("%s starts at %+v, want %+v", w.origin, got, w.pos)
				}
				if d.Upto[i] != w.upto {
					t.Errorf("%s replays up to %d, want %d", w.origin, d.Upto[i], w.upto)
				}
			}
			if !reflect.DeepEqual(d.Resets, tc.resets) {
				t.Errorf("resets\n got %+v\nwant %+v", d.Resets, tc.resets)
			}
			if d.Replays(cur) != tc.replays {
				t.Errorf("Replays = %v, want %v", d.Replays(cur), tc.replays)
			}
		})
	}
}

// parseSpec turns "local:EPOCH:OFFSET" or "remote:EPOCH:LOCAL:REMOTE"
// into a cursor string.
func parseSpec(t *testing.T, spec string) string {
	t.Helper()
	parts := splitColon(spec)
	var offs []uint64
	for _, p := range parts[2:] {
		off, err := strconv.ParseUint(p, 10, 64)
		if err != nil {
			t.Fatalf("bad spec %q", spec)
		}
		offs = append(offs, off)
	}
	return at(t, parts[1], offs[0], offs[1:]...)
}

func splitColon(s string) []string { return strings.Split(s, ":") }

// TestBehind: a resume waits only for remote replicas that lack what the
// client has, or do not know its epoch; never for the local origin.
func TestBehind(t *testing.T) {
	origins := []string{"local", "remote"}
	cur, _ := push.NewCursor([]string{"t"}, origins)
	parsed, err := push.ParseCursor(at(t, "e1", 12, 12), []string{"t"}, origins)
	if err != nil {
		t.Fatal(err)
	}
	r := stream.Resume{Parsed: parsed, Local: "local"}
	infos := []push.StreamInfo{
		{Topic: "t", Origin: "local", Epoch: "e1", First: 1, Last: 10, Length: 10, EpochStart: 1},
		{Topic: "t", Origin: "remote", Epoch: "e1", First: 1, Last: 10, Length: 10, EpochStart: 1},
	}
	if got := stream.Behind(cur, r, infos); !reflect.DeepEqual(got, map[string]bool{"remote": true}) {
		t.Fatalf("behind = %v, want only remote", got)
	}
	infos[1].Last = 12
	if got := stream.Behind(cur, r, infos); len(got) != 0 {
		t.Fatalf("caught-up replica: behind = %v", got)
	}
	infos[1].Epoch = "e9"
	if got := stream.Behind(cur, r, infos); !reflect.DeepEqual(got, map[string]bool{"remote": true}) {
		t.Fatalf("replica without the client's epoch: behind = %v, want remote", got)
	}
	if got := stream.Behind(cur, stream.Resume{Local: "local"}, infos); got != nil {
		t.Fatalf("no cursor: behind = %v", got)
	}
}
