package cluster

import (
	"encoding/binary"
	"fmt"
)

// Periodic push/pull exchanges constant-size summaries; digests travel only
// for the buckets where two nodes differ (ADR 0035, amending ADR 0030).
//
// A summary lists, for every live peer P, a sum per bucket (the top
// summaryBits bits of the session hash) over the records this node holds
// and would put in its digest (its own, and those of live owners) that P
// should hold too: P is the record's owner or one of its homes. Both
// nodes of a pair compute the same sums when they hold the same records
// and agree on the ring, so the receiver computes its own sums for the
// sender and compares them with the sender's section for itself. Where a
// bucket differs it asks the sender (msgDigestReq, a reliable message) for
// the digest of its records in those buckets (msgBucketDigest, whole
// buckets within maxSmallMsg), and merges it exactly as a push/pull digest
// (mergeDigest), restricted to those buckets. Both sides do the same with
// each other's summary, so both directions of ADR 0030's repairs happen.
//
// In steady state an exchange costs O(members × buckets) bytes and
// allocations, not O(records): a node holding no stream no longer churns
// memory with the streams the others hold (issue 25). Where the two
// nodes' views of a record differ (a stale owner, a stale home, a
// different ring) the record is counted in different sections or with
// different contents, so its bucket differs and ADR 0030's digest logic
// runs on it. Joins (memberlist Join: startup, a member back from dead, a
// healed partition) still exchange full digests, and so does every
// periodic exchange while a live member does not advertise summaries
// (wireSummaries, a rolling upgrade).
const (
	summaryBits    = 7
	summaryBuckets = 1 << summaryBits
	bucketMaskLen  = summaryBuckets / 8
	sectionLen     = summaryBuckets * 8

	// wireSummaries is the nodeMeta.W bit saying a node decodes msgSummary,
	// msgDigestReq and msgBucketDigest.
	wireSummaries = 2

	// maxExchanging bounds bucket requests and answers in flight.
	maxExchanging = 4
	// bucketAnswerBudget keeps a msgBucketDigest under maxSmallMsg.
	bucketAnswerBudget = maxSmallMsg - 4<<10
)

// bucketOf is the summary bucket of a session hash (sid.hash).
func bucketOf(h uint64) int { return int(h >> (64 - summaryBits)) }

type bucketMask [bucketMaskLen]byte

func (m *bucketMask) set(i int)      { m[i/8] |= 1 << (i % 8) }
func (m *bucketMask) has(i int) bool { return m[i/8]&(1<<(i%8)) != 0 }
func (m *bucketMask) count() int {
	n := 0
	for i := range summaryBuckets {
		if m.has(i) {
			n++
		}
	}
	return n
}

// recordSum is one record's contribution to its bucket's sum: its session
// hash, owner, incarnation and tombstone flag, mixed.
func recordSum(h uint64, owner string, inc uint64, ended bool) uint64 {
	x := h ^ mix64(inc^fnvAdd(fnvOffset, owner))
	if ended {
		x ^= 0x9e3779b97f4a7c15
	}
	return mix64(x)
}

// summary is a decoded msgSummary: sections stay in the message buffer.
type summary struct {
	from  string
	peers []string
	sums  []byte // len(peers) × sectionLen, big-endian uint64 sums
}

func (s summary) section(name string) ([]byte, bool) {
	for i, p := range s.peers {
		if p == name {
			return s.sums[i*sectionLen : (i+1)*sectionLen], true
		}
	}
	return nil, false
}

func encodeSummary(from string, peers []string, sums [][summaryBuckets]uint64) []byte {
	n := 3 + 2*binary.MaxVarintLen64 + len(from)
	for _, p := range peers {
		n += binary.MaxVarintLen64 + len(p) + sectionLen
	}
	out := make([]byte, 0, n)
	out = append(out, wireVersion, msgSummary)
	out = binary.AppendUvarint(out, uint64(len(from)))
	out = append(out, from...)
	out = append(out, summaryBits)
	out = binary.AppendUvarint(out, uint64(len(peers)))
	for i, p := range peers {
		out = binary.AppendUvarint(out, uint64(len(p)))
		out = append(out, p...)
		for _, v := range sums[i] {
			out = binary.BigEndian.AppendUint64(out, v)
		}
	}
	return out
}

// wireName reads a uvarint-prefixed printable name from p.
func wireName(p []byte, what string) (string, []byte, error) {
	n, k := binary.Uvarint(p)
	if k <= 0 || n == 0 || n > MaxNodeNameLen || n > uint64(len(p)-k) {
		return "", nil, fmt.Errorf("%w: bad %s", ErrMalformed, what)
	}
	s := string(p[k : k+int(n)])
	if !printable(s) {
		return "", nil, fmt.Errorf("%w: bad %s", ErrMalformed, what)
	}
	return s, p[k+int(n):], nil
}

// decodeSummary decodes and validates the payload of a msgSummary (after
// the two header bytes).
func decodeSummary(p []byte) (summary, error) {
	var s summary
	var err error
	if s.from, p, err = wireName(p, "summary sender"); err != nil {
		return s, err
	}
	if len(p) < 1 || p[0] != summaryBits {
		return s, fmt.Errorf("%w: summary: bucket bits", ErrMalformed)
	}
	p = p[1:]
	n, k := binary.Uvarint(p)
	if k <= 0 || n > uint64(len(p))/sectionLen {
		return s, fmt.Errorf("%w: summary: bad peer count", ErrMalformed)
	}
	p = p[k:]
	s.peers = make([]string, 0, n)
	s.sums = make([]byte, 0, int(n)*sectionLen)
	for range n {
		var name string
		if name, p, err = wireName(p, "summary peer"); err != nil {
			return s, err
		}
		if len(p) < sectionLen {
			return s, fmt.Errorf("%w: summary: short section", ErrMalformed)
		}
		s.peers = append(s.peers, name)
		s.sums = append(s.sums, p[:sectionLen]...)
		p = p[sectionLen:]
	}
	if len(p) != 0 {
		return s, fmt.Errorf("%w: summary: %d trailing bytes", ErrMalformed, len(p))
	}
	return s, nil
}

func encodeDigestReq(from string, mask bucketMask) []byte {
	out := make([]byte, 0, 3+len(from)+binary.MaxVarintLen64+bucketMaskLen)
	out = append(out, wireVersion, msgDigestReq)
	out = binary.AppendUvarint(out, uint64(len(from)))
	out = append(out, from...)
	return append(out, mask[:]...)
}

func decodeDigestReq(p []byte, m *message) error {
	var err error
	if m.from, p, err = wireName(p, "request sender"); err != nil {
		return err
	}
	if len(p) != bucketMaskLen {
		return fmt.Errorf("%w: digest request: %d mask bytes", ErrMalformed, len(p))
	}
	copy(m.mask[:], p)
	if m.mask.count() == 0 {
		return fmt.Errorf("%w: digest request: no bucket", ErrMalformed)
	}
	return nil
}

// decodeBucketDigest decodes a msgBucketDigest's payload: the mask of the
// buckets it answers, then a digest whose entries all lie in them.
func decodeBucketDigest(p []byte, m *message) error {
	if len(p) < bucketMaskLen {
		return fmt.Errorf("%w: bucket digest: no mask", ErrMalformed)
	}
	copy(m.mask[:], p)
	d, err := decodeDigest(p[bucketMaskLen:])
	m.from, m.dig = d.from, d
	if err != nil {
		return err
	}
	for i := range d.len() {
		if !m.mask.has(bucketOf(d.hashAt(i))) {
			return fmt.Errorf("%w: bucket digest: entry %d outside its buckets", ErrMalformed, i)
		}
	}
	return nil
}

// speaksSummaries reports whether every live member advertises summaries.
func (c *Cluster) speaksSummaries() bool {
	c.memMu.RLock()
	defer c.memMu.RUnlock()
	for _, e := range c.members {
		if !e.down && e.meta.W&wireSummaries == 0 {
			return false
		}
	}
	return true
}

// summarySums computes this node's bucket sums for peers (names of live
// members other than this node): what summarises, per peer, the records
// this node would put in its digest that the peer should hold too.
func (c *Cluster) summarySums(peers []string) [][summaryBuckets]uint64 {
	self, r := c.cfg.NodeName, c.cfg.HomeReplicas
	ring := c.ring()
	sums := make([][summaryBuckets]uint64, len(peers))
	idx := make(map[string]int, len(peers))
	for i, p := range peers {
		idx[p] = i
	}
	var buf [4]scored
	c.recMu.RLock()
	c.memMu.RLock()
	for s, e := range c.records.all() {
		owner := e.who.node
		if owner != self {
			if m := c.members[owner]; m == nil || m.down {
				continue
			}
		}
		h, sh := s.hash(), s.fnv()
		v, b := recordSum(h, owner, e.inc, e.ended()), bucketOf(h)
		oi, ownerPeer := idx[owner]
		if ownerPeer {
			sums[oi][b] += v
		}
		for _, t := range homeSetAt(sh, owner, ring, r, buf[:0]) {
			if i, ok := idx[t.name]; ok {
				sums[i][b] += v
			}
		}
	}
	c.memMu.RUnlock()
	c.recMu.RUnlock()
	return sums
}

// localSummary encodes this node's summary for every live peer.
func (c *Cluster) localSummary() []byte {
	self := c.cfg.NodeName
	var peers []string
	for _, m := range c.ring() {
		if m != self {
			peers = append(peers, m)
		}
	}
	return encodeSummary(self, peers, c.summarySums(peers))
}

// mergeSummary compares a peer's summary with this node's sums for that
// peer and asks the peer for the digests of the buckets that differ.
func (c *Cluster) mergeSummary(s summary) {
	self := c.cfg.NodeName
	if s.from == self {
		return
	}
	c.st.summaries.Add(1)
	var mask bucketMask
	theirs, ok := s.section(self)
	if !ok {
		// The sender does not count this node as live: compare everything.
		for i := range summaryBuckets {
			mask.set(i)
		}
	} else {
		mine := c.summarySums([]string{s.from})[0]
		for i, v := range mine {
			if binary.BigEndian.Uint64(theirs[i*8:]) != v {
				mask.set(i)
			}
		}
	}
	n := mask.count()
	if n == 0 {
		c.st.merges.Add(1) // in sync: nothing to repair
		return
	}
	c.st.bucketsRequested.Add(uint64(n))
	c.sendExchange(s.from, encodeDigestReq(self, mask))
	c.st.merges.Add(1)
}

// onDigestReq answers a peer's request with the digest of this node's
// records in the requested buckets: whole buckets, in order, as many as
// fit bucketAnswerBudget (the rest differ again at the next exchange).
func (c *Cluster) onDigestReq(m message) {
	self := c.cfg.NodeName
	if m.from == self || c.liveNode(m.from) == nil { // before walking the table
		c.st.exchangeDrops.Add(1)
		return
	}
	var count [summaryBuckets]int
	c.recMu.RLock()
	c.memMu.RLock()
	include := func(e *entry) bool {
		if e.who.node == self {
			return true
		}
		o := c.members[e.who.node]
		return o != nil && !o.down
	}
	for s, e := range c.records.all() {
		if b := bucketOf(s.hash()); m.mask.has(b) && include(e) {
			count[b]++
		}
	}
	var names int
	for name := range c.members {
		names += binary.MaxVarintLen64 + len(name)
	}
	var mask bucketMask
	size := 16 + bucketMaskLen + names + len(self)
	for b := range summaryBuckets {
		if m.mask.has(b) && size+count[b]*digestEntry <= bucketAnswerBudget {
			size += count[b] * digestEntry
			mask.set(b)
		}
	}
	n := 0
	for _, v := range count {
		n += v
	}
	d := newDigestBuilder(self, n)
	for s, e := range c.records.all() {
		if h := s.hash(); mask.has(bucketOf(h)) && include(e) {
			d.add(h, e.who.node, e.inc, e.ended(), 0)
		}
	}
	c.memMu.RUnlock()
	c.recMu.RUnlock()
	if mask.count() == 0 {
		c.st.exchangeDrops.Add(1)
		return
	}
	c.sendExchange(m.from, d.encodeBuckets(self, mask))
}

// sendExchange sends msg to the live member dest on a goroutine of its
// own, at most maxExchanging at a time (the rest are dropped and counted:
// the next exchange asks again). memberlist bounds the send by TCPTimeout.
func (c *Cluster) sendExchange(dest string, msg []byte) {
	node := c.liveNode(dest)
	if node == nil {
		c.st.exchangeDrops.Add(1)
		return
	}
	select {
	case c.exchanging <- struct{}{}:
	default:
		c.st.exchangeDrops.Add(1)
		return
	}
	if !c.goFunc(func() {
		defer func() { <-c.exchanging }()
		if err := c.ml.SendReliable(node, msg); err != nil {
			c.log.Debug("bucket exchange failed", "to", dest, "err", err)
		}
	}) {
		<-c.exchanging
	}
}
