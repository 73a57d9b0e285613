package main

import (
	"testing"
	"time"

	"github.com/heraldpush/herald/push"
)

// The nemesis's checker must catch what it claims to: each case feeds it a
// subscriber record with one violation (or none) and checks the count.
func TestChaosCheckerCatchesViolations(t *testing.T) {
	t0 := time.Now()
	ack := func(p string, off uint64, at time.Duration) ackRec {
		return ackRec{Topic: "cx-0", Payload: p, Epoch: "e1", Offset: off, At: t0.Add(at)}
	}
	ev := func(p string, off uint64) recvRec { return recvRec{Topic: "cx-0", Payload: p, Offset: off} }
	reset := func(from, to, cont uint64) recvRec {
		return recvRec{Topic: "cx-0", Reset: &push.StreamReset{Topic: "cx-0", Reason: "epoch_changed", LostFrom: from, LostTo: to, ContinueFrom: cont}}
	}
	acks := map[string]ackRec{
		"cx-0/0/1": ack("cx-0/0/1", 1, 0), "cx-0/0/2": ack("cx-0/0/2", 2, time.Second), "cx-0/0/3": ack("cx-0/0/3", 3, 2*time.Second),
	}
	all := map[string]map[string]uint64{"cx-0": {"cx-0/0/1": 1, "cx-0/0/2": 2, "cx-0/0/3": 3}}
	rolledBack := map[string]map[string]uint64{"cx-0": {"cx-0/0/1": 1}} // 2 and 3 lost
	rollback := []faultRecord{{Kind: faultRollback, At: t0.Add(3 * time.Second)}}
	cases := []struct {
		name    string
		history map[string]map[string]uint64
		faults  []faultRecord
		log     []recvRec
		check   func(c chaosCounts) bool
	}{
		{"clean", all, nil, []recvRec{ev("cx-0/0/1", 1), ev("cx-0/0/2", 2), ev("cx-0/0/3", 3)},
			func(c chaosCounts) bool { return c.SilentLoss+c.Duplicates+c.Reorders == 0 && c.Delivered == 3 }},
		{"silent loss", all, nil, []recvRec{ev("cx-0/0/1", 1), ev("cx-0/0/3", 3)},
			func(c chaosCounts) bool { return c.SilentLoss == 1 }},
		{"duplicate", all, nil, []recvRec{ev("cx-0/0/1", 1), ev("cx-0/0/2", 2), ev("cx-0/0/2", 2), ev("cx-0/0/3", 3)},
			func(c chaosCounts) bool { return c.Duplicates == 1 }},
		{"reorder", all, nil, []recvRec{ev("cx-0/0/1", 1), ev("cx-0/0/3", 3), ev("cx-0/0/2", 2)},
			func(c chaosCounts) bool { return c.Reorders >= 1 }},
		{"rollback named exactly", rolledBack, rollback, []recvRec{ev("cx-0/0/1", 1), ev("cx-0/0/2", 2), ev("cx-0/0/3", 3), reset(2, 3, 2)},
			func(c chaosCounts) bool {
				return c.RetractedNamed == 2 && c.RetractedSilently == 0 && c.LostByRedis == 2 && c.PerFault[faultRollback].LostAcked == 2
			}},
		{"rollback not named", rolledBack, rollback, []recvRec{ev("cx-0/0/1", 1), ev("cx-0/0/2", 2), ev("cx-0/0/3", 3)},
			func(c chaosCounts) bool { return c.RetractedSilently == 2 }},
		{"loss without a lossy fault", rolledBack, []faultRecord{{Kind: faultNodeKill, At: t0.Add(3 * time.Second)}}, []recvRec{ev("cx-0/0/1", 1)},
			func(c chaosCounts) bool { return c.LossOutsideLossyFaults == 2 }},
		{"named lost while present", all, nil, []recvRec{ev("cx-0/0/1", 1), reset(2, 3, 4)},
			func(c chaosCounts) bool { return c.FalseLoss == 2 }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := newChaosSub("s", []string{"cx-0"})
			s.log = tc.log
			c := checkChaos(acks, 0, tc.history, []*chaosSub{s}, tc.faults, nil)
			if !tc.check(c) {
				t.Fatalf("counts:\n%s\nproblems %v", c, c.Problems)
			}
		})
	}
}
