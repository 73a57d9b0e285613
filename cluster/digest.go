package cluster

import (
	"cmp"
	"encoding/binary"
	"fmt"
	"slices"
)

// Push/pull anti-entropy exchanges digests, not records (ADR 0026, amended
// by ADR 0030). A digest lists, for every record a node would have sent in
// full (its own, and those it is home of whose owner is live), the
// session's 64-bit hash, the incarnation, the owner (an index into a name
// table) and whether it is a tombstone: 19 bytes a record instead of ~200
// of JSON, sent sorted by hash so the receiver searches the message in
// place without decoding it into a table. The receiver compares every
// record it holds with the sender's entry and forwards full records (the
// bounded, batched forward queue, forward.go) only where they differ:
//
//   - it holds a newer record than the sender's entry: the sender is a stale
//     owner (it learns it lost the session: the paused-node guarantee) or a
//     stale home, so the record goes to the sender;
//   - its own claim is older than the sender's entry: it sends its claim,
//     which the sender answers with the newer record (applyLocked), and
//     the claim is revoked here;
//   - the sender lacks one of this node's own records, or a live record of
//     a live owner that this node homes, although it is one of the
//     session's homes: the record goes to the sender (home repair).
//
// A hash collision can only cause a needless forward or miss a repair that
// the next exchange makes; revocations still come from full records only.
// A push/pull therefore costs memory proportional to the digests (19 B a
// record, several copies inside memberlist) instead of the decoded JSON of
// every record of both nodes, which is what made a node holding no stream
// grow with the others' streams (issue 25).

const digestEntry = 19 // hash 8, incarnation 8, owner index 2, flags 1

const digestEnded byte = 1

// digest is a decoded msgDigest: entries stay in the message buffer.
type digest struct {
	from    string
	names   []string
	entries []byte // n × digestEntry, sorted by hash
}

func (d digest) len() int { return len(d.entries) / digestEntry }

func (d digest) hashAt(i int) uint64 {
	return binary.BigEndian.Uint64(d.entries[i*digestEntry:])
}

// find returns the sender's version of the session with hash h as a
// Record carrying only Node, Incarnation and Ended (what compareRecords
// reads).
func (d digest) find(h uint64) (Record, bool) {
	n := d.len()
	i, j := 0, n
	for i < j {
		m := int(uint(i+j) >> 1)
		if d.hashAt(m) < h {
			i = m + 1
		} else {
			j = m
		}
	}
	if i == n || d.hashAt(i) != h {
		return Record{}, false
	}
	e := d.entries[i*digestEntry : (i+1)*digestEntry]
	idx := int(binary.BigEndian.Uint16(e[16:]))
	return Record{Node: d.names[idx], Incarnation: binary.BigEndian.Uint64(e[8:]), Ended: e[18]&digestEnded != 0}, true
}

// digestBuilder collects digest entries; encode sorts and encodes them.
type digestBuilder struct {
	names map[string]uint16
	order []string
	ents  []digestEnt
	size  int // encoded size so far
	left  int // entries refused by the budget
}

type digestEnt struct {
	h, inc uint64
	idx    uint16
	ended  bool
}

func newDigestBuilder(from string, n int) *digestBuilder {
	return &digestBuilder{names: map[string]uint16{}, ents: make([]digestEnt, 0, n),
		size: 2 + 3*binary.MaxVarintLen64 + len(from)}
}

// add appends one record's entry unless it would take the message over
// budget (0: no budget) or the name table is full.
func (b *digestBuilder) add(h uint64, node string, inc uint64, ended bool, budget int) {
	idx, ok := b.names[node]
	add := digestEntry
	if !ok {
		add += binary.MaxVarintLen64 + len(node)
	}
	if (budget > 0 && b.size+add > budget) || (!ok && len(b.order) == 1<<16-1) {
		b.left++
		return
	}
	if !ok {
		idx = uint16(len(b.order))
		b.names[node] = idx
		b.order = append(b.order, node)
	}
	b.size += add
	b.ents = append(b.ents, digestEnt{h, inc, idx, ended})
}

// encode returns the msgDigest, entries sorted by hash.
func (b *digestBuilder) encode(from string) []byte {
	return b.encodeTo(make([]byte, 0, b.size+2), msgDigest, from)
}

// encodeBuckets returns a msgBucketDigest answering for the buckets of
// mask (summary.go).
func (b *digestBuilder) encodeBuckets(from string, mask bucketMask) []byte {
	out := make([]byte, 0, b.size+2+bucketMaskLen)
	return b.encodeTo(append(out, wireVersion, msgBucketDigest), 0, from, mask[:]...)
}

// encodeTo appends the header (unless kind is 0: out has it), then pre,
// then the digest payload.
func (b *digestBuilder) encodeTo(out []byte, kind byte, from string, pre ...byte) []byte {
	slices.SortFunc(b.ents, func(x, y digestEnt) int { return cmp.Compare(x.h, y.h) })
	if kind != 0 {
		out = append(out, wireVersion, kind)
	}
	out = append(out, pre...)
	out = binary.AppendUvarint(out, uint64(len(from)))
	out = append(out, from...)
	out = binary.AppendUvarint(out, uint64(len(b.order)))
	for _, n := range b.order {
		out = binary.AppendUvarint(out, uint64(len(n)))
		out = append(out, n...)
	}
	out = binary.AppendUvarint(out, uint64(len(b.ents)))
	for _, e := range b.ents {
		out = binary.BigEndian.AppendUint64(out, e.h)
		out = binary.BigEndian.AppendUint64(out, e.inc)
		out = binary.BigEndian.AppendUint16(out, e.idx)
		var f byte
		if e.ended {
			f = digestEnded
		}
		out = append(out, f)
	}
	return out
}

// encodeDigest encodes recs as a msgDigest within budget bytes (0: no
// budget). It returns the message and the number of records left out.
func encodeDigest(from string, recs []Record, budget int) ([]byte, int) {
	b := newDigestBuilder(from, len(recs))
	for _, r := range recs {
		b.add(sessionHash(r.Session), r.Node, r.Incarnation, r.Ended, budget)
	}
	return b.encode(from), b.left
}

// decodeDigest decodes and validates the payload of a msgDigest (after the
// two header bytes). Entries must be sorted by hash, name indexes in range,
// incarnations non-zero.
func decodeDigest(p []byte) (digest, error) {
	var d digest
	str := func(what string, max int) (string, error) {
		n, k := binary.Uvarint(p)
		if k <= 0 || n > uint64(max) || n > uint64(len(p)-k) {
			return "", fmt.Errorf("%w: digest: bad %s", ErrMalformed, what)
		}
		s := string(p[k : k+int(n)])
		p = p[k+int(n):]
		if s == "" || !printable(s) {
			return "", fmt.Errorf("%w: digest: bad %s", ErrMalformed, what)
		}
		return s, nil
	}
	var err error
	if d.from, err = str("sender", MaxNodeNameLen); err != nil {
		return d, err
	}
	n, k := binary.Uvarint(p)
	if k <= 0 || n > 1<<16-1 || n > uint64(len(p)) {
		return d, fmt.Errorf("%w: digest: bad name count", ErrMalformed)
	}
	p = p[k:]
	d.names = make([]string, 0, n)
	for range n {
		s, err := str("owner name", MaxNodeNameLen)
		if err != nil {
			return d, err
		}
		d.names = append(d.names, s)
	}
	cnt, k := binary.Uvarint(p)
	if k <= 0 || cnt > uint64(len(p))/digestEntry || uint64(len(p)-k) != cnt*digestEntry {
		return d, fmt.Errorf("%w: digest: %d entries do not fill %d bytes", ErrMalformed, cnt, len(p)-max(k, 0))
	}
	d.entries = p[k:]
	var prev uint64
	for i := range int(cnt) {
		e := d.entries[i*digestEntry:]
		h := binary.BigEndian.Uint64(e)
		if i > 0 && h < prev {
			return d, fmt.Errorf("%w: digest: entries not sorted", ErrMalformed)
		}
		prev = h
		if binary.BigEndian.Uint64(e[8:]) == 0 || int(binary.BigEndian.Uint16(e[16:])) >= len(d.names) || e[18]&^digestEnded != 0 {
			return d, fmt.Errorf("%w: digest: bad entry %d", ErrMalformed, i)
		}
	}
	return d, nil
}

// mergeDigest compares the records held here with a peer's digest and
// queues the full records the peer needs or must answer (see the comment
// at the top of this file). With a mask (a msgBucketDigest, summary.go)
// only the records in its buckets are compared: the digest covers no
// others.
func (c *Cluster) mergeDigest(d digest, mask *bucketMask) {
	c.st.merges.Add(1)
	self, from := c.cfg.NodeName, d.from
	if from == self {
		return
	}
	ring := c.ring()
	r := c.cfg.HomeReplicas
	live := make(map[string]bool, len(ring)) // not slices.Contains per record: O(N) each
	for _, m := range ring {
		live[m] = true
	}
	// A member that joined since the forward loop last rehomed gets this
	// node's own records from the rehoming that follows (forward.go):
	// queueing them here too sent a joining node every record twice.
	rehomePending := !slices.Contains(*c.rehomed.Load(), from)
	c.recMu.Lock()
	defer c.recMu.Unlock()
	for s, e := range c.records.all() {
		sh := s.fnv()
		if mask != nil && !mask.has(bucketOf(mix64(sh))) {
			continue
		}
		theirs, ok := d.find(mix64(sh))
		send := false
		switch {
		case ok:
			switch compareRecords(e.key(), theirs) {
			case 1:
				send = !theirs.Ended || homeAt(sh, from, e.who.node, ring, r)
			case -1:
				send = e.who.node == self && !e.ended()
			}
		case e.who.node == self:
			send = !rehomePending && homeAt(sh, from, self, ring, r)
		case !e.ended() && live[e.who.node]:
			// Another home of a live owner's record: it may hear from the
			// owner later, but this exchange is here now.
			send = homeAt(sh, from, e.who.node, ring, r)
		}
		if send {
			c.st.digestRepairs.Add(1)
			c.forwardLocked(from, fwdItem{s, *e})
		}
	}
}

// localDigest encodes the digest of this node's own records and the
// records of live owners it holds as a home node, for push/pull. Records
// of down owners are left out, so that they expire everywhere instead of
// being passed around. Own records come first: the budget must not leave
// them out.
func (c *Cluster) localDigest() []byte {
	self := c.cfg.NodeName
	c.recMu.RLock()
	c.memMu.RLock()
	b := newDigestBuilder(self, c.records.len())
	for s, e := range c.records.all() {
		if e.who.node == self {
			b.add(s.hash(), self, e.inc, e.ended(), stateBudget)
		}
	}
	for s, e := range c.records.all() {
		if m := c.members[e.who.node]; m != nil && !m.down && e.who.node != self {
			b.add(s.hash(), e.who.node, e.inc, e.ended(), stateBudget)
		}
	}
	c.memMu.RUnlock()
	c.recMu.RUnlock()
	if b.left > 0 {
		c.st.stateTruncated.Add(1)
		c.log.Warn("push/pull digest truncated", "records", len(b.ents)+b.left, "left_out", b.left)
	}
	return b.encode(self)
}
