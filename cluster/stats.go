package cluster

import "sync/atomic"

// Stats is a snapshot of the Cluster's counters (monotonic since New) and
// gauges, for metrics and tests.
type Stats struct {
	// Ownership records sent to their home nodes (ADR 0026).
	ForwardsQueued  uint64 // records queued for a home node or as a takeover notice
	ForwardsSent    uint64 // records delivered by direct messages (batches)
	RecordsReceived uint64 // records received in direct messages and notices
	NotHome         uint64 // received records of other owners not stored (this node is not a home)
	Rehomed         uint64 // own records sent to new home nodes after membership changes
	Duplicates      uint64 // received records identical to the known one (dropped)
	Stale           uint64 // received records older than the known one, or expired (dropped)
	Invalid         uint64 // malformed, oversized or unknown-version messages and metadata (dropped)
	InboxDrops      uint64 // callbacks dropped because the event inbox was full
	QueueDrops      uint64 // records not queued or re-queued (MaxQueuedBroadcasts)
	QueueLen        int    // records currently queued for forwarding

	// Queries of Find and PresenceAll.
	Queries    uint64 // queries sent (one per Find step or PresenceAll)
	Answered   uint64 // queries answered for peers
	QueryDrops uint64 // queries from peers dropped (too many answers in flight)

	// Anti-entropy.
	Merges        uint64 // push/pull digests (or an older peer's states) merged
	DigestRepairs uint64 // records forwarded because a peer's digest differed
	// Periodic push/pull summaries (ADR 0035).
	Summaries        uint64 // peers' summaries compared
	BucketsRequested uint64 // summary buckets that differed, whose digests were asked for
	ExchangeDrops    uint64 // bucket requests or answers not sent (too many in flight, peer not live)
	StateTruncated   uint64 // local states cut at the size budget
	Syncs            uint64 // prompt push/pulls with a member that came back
	SyncDrops        uint64 // prompt push/pull requests dropped (queue full)

	// Ownership.
	Revocations         uint64 // OnRevoke deliveries queued, all reasons
	RevocationsTakeover uint64
	RevocationsAdmin    uint64
	Corrections         uint64 // stale live records naming this node turned into tombstones
	NoticesSent         uint64 // takeover notices queued for a previous owner (or a stale claimant)
	NoticeFailures      uint64 // batch sends that failed (retried while the member is live)
	NoticeDrops         uint64 // records given up (destination not live, attempts exhausted)
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
	queued, sent, received, notHome, rehomed, duplicates, stale   atomic.Uint64
	invalid, queries, answered, queryDrops                        atomic.Uint64
	inboxDrops, queueDrops, merges, stateTruncated, syncs         atomic.Uint64
	syncDrops, revocations, revocationsTakeover, revocationsAdmin atomic.Uint64
	corrections, noticesSent, noticeFailures, noticeDrops         atomic.Uint64
	disconnectsReceived, invalidClaims, expired                   atomic.Uint64
	joinAttempts, joinFailures, digestRepairs                     atomic.Uint64
	summaries, bucketsRequested, exchangeDrops                    atomic.Uint64
}

// Stats returns a snapshot of the counters.
func (c *Cluster) Stats() Stats {
	s := Stats{
		ForwardsQueued: c.st.queued.Load(), ForwardsSent: c.st.sent.Load(),
		RecordsReceived: c.st.received.Load(), NotHome: c.st.notHome.Load(), Rehomed: c.st.rehomed.Load(),
		Duplicates: c.st.duplicates.Load(), Stale: c.st.stale.Load(), Invalid: c.st.invalid.Load(),
		InboxDrops: c.st.inboxDrops.Load(), QueueDrops: c.st.queueDrops.Load(),
		QueueLen: c.queueLen(),
		Queries:  c.st.queries.Load(), Answered: c.st.answered.Load(), QueryDrops: c.st.queryDrops.Load(),
		Merges: c.st.merges.Load(), DigestRepairs: c.st.digestRepairs.Load(), StateTruncated: c.st.stateTruncated.Load(),
		Summaries: c.st.summaries.Load(), BucketsRequested: c.st.bucketsRequested.Load(),
		ExchangeDrops: c.st.exchangeDrops.Load(),
		Syncs:         c.st.syncs.Load(), SyncDrops: c.st.syncDrops.Load(),
		Revocations: c.st.revocations.Load(), RevocationsTakeover: c.st.revocationsTakeover.Load(),
		RevocationsAdmin: c.st.revocationsAdmin.Load(), Corrections: c.st.corrections.Load(),
		NoticesSent: c.st.noticesSent.Load(), NoticeFailures: c.st.noticeFailures.Load(),
		NoticeDrops: c.st.noticeDrops.Load(), DisconnectsReceived: c.st.disconnectsReceived.Load(),
		InvalidClaims: c.st.invalidClaims.Load(), Expired: c.st.expired.Load(),
		JoinAttempts: c.st.joinAttempts.Load(), JoinFailures: c.st.joinFailures.Load(),
		Members: make(map[string]int),
	}
	c.recMu.RLock()
	for _, e := range c.records.all() {
		if e.ended() {
			s.RecordsTombstoned++
		} else {
			s.RecordsLive++
		}
		if e.served() {
			s.Owned++
		}
	}
	c.recMu.RUnlock()
	for _, m := range c.Members() {
		s.Members[m.State]++
	}
	return s
}

func (c *Cluster) queueLen() int {
	c.fwdMu.Lock()
	defer c.fwdMu.Unlock()
	return c.fwdLen + c.fwdInflight
}
