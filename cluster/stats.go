package cluster

import "sync/atomic"

// Stats is a snapshot of the Cluster's counters (monotonic since New) and
// gauges, for metrics and tests.
type Stats struct {
	// Gossip of ownership records.
	BroadcastsQueued   uint64 // records queued for gossip (own claims, releases, relays)
	BroadcastsSent     uint64 // record messages handed to memberlist (each retransmission counts)
	BroadcastsReceived uint64 // record messages received (gossip and direct notices)
	BroadcastsTrimmed  uint64 // broadcasts whose topics were trimmed to fit a UDP packet
	Duplicates         uint64 // received records identical to the known one (dropped)
	Stale              uint64 // received records older than the known one, or expired (dropped)
	Invalid            uint64 // malformed, oversized or unknown-version messages and metadata (dropped)
	InboxDrops         uint64 // callbacks dropped because the event inbox was full
	QueueDrops         uint64 // broadcasts pruned from the transmit queue (MaxQueuedBroadcasts)
	QueueLen           int    // broadcasts currently queued

	// Anti-entropy.
	Merges         uint64 // push/pull states merged
	StateTruncated uint64 // local states cut at the size budget
	Syncs          uint64 // prompt push/pulls with a member that came back
	SyncDrops      uint64 // prompt push/pull requests dropped (queue full)

	// Ownership.
	Revocations         uint64 // OnRevoke deliveries queued, all reasons
	RevocationsTakeover uint64
	RevocationsAdmin    uint64
	Corrections         uint64 // stale live records naming this node turned into tombstones
	NoticesSent         uint64 // direct takeover notices delivered to the previous owner
	NoticeFailures      uint64 // notice attempts that failed (retried)
	NoticeDrops         uint64 // notices given up or not queued
	DisconnectsReceived uint64 // admin disconnect requests received from peers
	InvalidClaims       uint64 // Claim calls refused by ValidateClaim
	Expired             uint64 // records forgotten (tombstones and records of dead nodes)
	RecordsLive         int    // live records known
	RecordsTombstoned   int    // tombstones known
	Owned               int    // claims this node serves

	// Membership.
	JoinAttempts uint64         // addresses tried by seed joins and reconnects
	JoinFailures uint64         // of which failed
	Members      map[string]int // known members by State, self included
}

type counters struct {
	queued, sent, received, trimmed, duplicates, stale, invalid   atomic.Uint64
	inboxDrops, queueDrops, merges, stateTruncated, syncs         atomic.Uint64
	syncDrops, revocations, revocationsTakeover, revocationsAdmin atomic.Uint64
	corrections, noticesSent, noticeFailures, noticeDrops         atomic.Uint64
	disconnectsReceived, invalidClaims, expired                   atomic.Uint64
	joinAttempts, joinFailures                                    atomic.Uint64
}

// Stats returns a snapshot of the counters.
func (c *Cluster) Stats() Stats {
	s := Stats{
		BroadcastsQueued: c.st.queued.Load(), BroadcastsSent: c.st.sent.Load(),
		BroadcastsReceived: c.st.received.Load(), BroadcastsTrimmed: c.st.trimmed.Load(),
		Duplicates: c.st.duplicates.Load(), Stale: c.st.stale.Load(), Invalid: c.st.invalid.Load(),
		InboxDrops: c.st.inboxDrops.Load(), QueueDrops: c.st.queueDrops.Load(),
		QueueLen: c.queue.NumQueued(),
		Merges:   c.st.merges.Load(), StateTruncated: c.st.stateTruncated.Load(),
		Syncs: c.st.syncs.Load(), SyncDrops: c.st.syncDrops.Load(),
		Revocations: c.st.revocations.Load(), RevocationsTakeover: c.st.revocationsTakeover.Load(),
		RevocationsAdmin: c.st.revocationsAdmin.Load(), Corrections: c.st.corrections.Load(),
		NoticesSent: c.st.noticesSent.Load(), NoticeFailures: c.st.noticeFailures.Load(),
		NoticeDrops: c.st.noticeDrops.Load(), DisconnectsReceived: c.st.disconnectsReceived.Load(),
		InvalidClaims: c.st.invalidClaims.Load(), Expired: c.st.expired.Load(),
		JoinAttempts: c.st.joinAttempts.Load(), JoinFailures: c.st.joinFailures.Load(),
		Members: make(map[string]int),
	}
	c.recMu.RLock()
	for _, e := range c.records {
		if e.rec.Ended {
			s.RecordsTombstoned++
		} else {
			s.RecordsLive++
		}
	}
	s.Owned = len(c.owned)
	c.recMu.RUnlock()
	for _, m := range c.Members() {
		s.Members[m.State]++
	}
	return s
}
