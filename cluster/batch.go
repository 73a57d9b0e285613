package cluster

import (
	"encoding/binary"
	"fmt"
	"math"
	"time"
	"unicode/utf8"
)

// Forwarded record batches (forward.go: claims to their homes, takeover
// notices, rehoming, digest repairs) are binary (ADR 0030, amended): a home
// receives every record of a connect burst this way, and memberlist copies
// each batch several times (framing, encryption, reading, our copy) before
// it is decoded, so the bytes per record and the decoder's allocations are
// what a connect burst costs the homes. JSON took ~180 bytes a record and
// seven allocations to decode; this form takes ~50 bytes and three.
//
// msgBatch payload (after the version and kind bytes):
//
//	uvarint len, sender name
//	uvarint record count
//	per record:
//	  flags byte (batchEnded, batchPartial, batchHexSession, batchTraceparent,
//	             batchSameOwner, batchSameTopics; other bits are invalid)
//	  session   8 bytes if batchHexSession (16 lower-case hex digits packed),
//	            else uvarint len + bytes
//	  owner     unless batchSameOwner: uvarint len + node, uvarint len + region
//	  uvarint incarnation, uvarint since (unix ns, 0 = zero time)
//	  uvarint ended-at (unix ns) if batchEnded
//	  topics    unless batchSameTopics: uvarint count, each uvarint len + bytes
//	  trace     26 bytes if batchTraceparent (packTrace without its marker),
//	            else uvarint len + bytes
//
// "Same" flags repeat the previous record's owner or topics: a batch is
// usually one owner's claims on few topics, and the decoder then shares
// the strings instead of allocating them per record.
//
// A node advertises that it decodes msgBatch in its metadata (nodeMeta.W);
// to a member that does not (a node from before this format, during a
// rolling upgrade) batches go as JSON msgState, which every node still
// decodes.
const (
	batchEnded byte = 1 << iota
	batchPartial
	batchHexSession
	batchTraceparent
	batchSameOwner
	batchSameTopics
	batchFlags = 1<<iota - 1

	// wireBinaryBatches is the nodeMeta.W bit saying a node decodes msgBatch.
	wireBinaryBatches = 1

	packedTraceLen = 26 // packTrace's bytes after its zero marker
)

// encodeBatch encodes records as a msgBatch, stopping before budget bytes
// (0: no budget). It returns the message and the number of records left
// out; at least one record is always encoded when there is one (a record
// is < 80 KiB, far below any batch budget).
func encodeBatch(from string, recs []Record, parts []bool, budget int) ([]byte, int) {
	return encodeBatchOf(from, len(recs), budget, func(out []byte, i int) []byte {
		var prev *Record
		if i > 0 {
			prev = &recs[i-1]
		}
		return appendBatchRecord(out, &recs[i], parts[i], prev)
	})
}

// encodeItems is encodeBatch of queued items (forward.go), encoded from
// their entries without building Records; the bytes are the same.
func encodeItems(from string, items []fwdItem, budget int) ([]byte, int) {
	return encodeBatchOf(from, len(items), budget, func(out []byte, i int) []byte {
		var prev *fwdItem
		if i > 0 {
			prev = &items[i-1]
		}
		return appendBatchItem(out, &items[i], prev)
	})
}

// encodeBatchOf builds a msgBatch of n records appended by add(out, i), in
// order, stopping before budget bytes.
func encodeBatchOf(from string, n, budget int, add func(out []byte, i int) []byte) ([]byte, int) {
	// Header: the count is written last into a fixed 5-byte uvarint slot
	// (batchBudget < 2^35 records), so the message is built in one buffer.
	size := 16 + len(from) + n*56 // a typical Herald record takes ~53 bytes
	if budget > 0 {
		size = min(size, budget+1<<10) // the record that crosses the budget is cut off
	}
	out := make([]byte, 0, size)
	out = append(out, wireVersion, msgBatch)
	out = binary.AppendUvarint(out, uint64(len(from)))
	out = append(out, from...)
	countAt := len(out)
	out = append(out, 0x80, 0x80, 0x80, 0x80, 0)
	done := 0
	for i := range n {
		mark := len(out)
		out = add(out, i)
		if budget > 0 && len(out) > budget && done > 0 {
			out = out[:mark]
			break
		}
		done++
	}
	c := uint64(done)
	for i := range 4 {
		out[countAt+i] = byte(c&0x7f) | 0x80
		c >>= 7
	}
	out[countAt+4] = byte(c)
	return out, n - done
}

// appendBatchItem is appendBatchRecord of a queued item.
func appendBatchItem(out []byte, it *fwdItem, prev *fwdItem) []byte {
	e := &it.e
	var f byte
	if e.ended() {
		f |= batchEnded
	}
	if e.partial() {
		f |= batchPartial
	}
	if it.k.s == "" {
		f |= batchHexSession
	}
	if e.flags&entTrace != 0 {
		f |= batchTraceparent
	}
	if prev != nil && prev.e.who.node == e.who.node && prev.e.who.region == e.who.region {
		f |= batchSameOwner
	}
	if prev != nil && sameStrings(prev.e.who.topics, e.who.topics) {
		f |= batchSameTopics
	}
	out = append(out, f)
	if f&batchHexSession != 0 {
		out = binary.BigEndian.AppendUint64(out, it.k.h)
	} else {
		out = appendString(out, it.k.s)
	}
	if f&batchSameOwner == 0 {
		out = appendString(out, e.who.node)
		out = appendString(out, e.who.region)
	}
	out = binary.AppendUvarint(out, e.inc)
	out = binary.AppendUvarint(out, uint64(max(e.since(), 0)))
	if e.ended() {
		out = binary.AppendUvarint(out, max(uint64(max(e.at, 0)), 1))
	}
	if f&batchSameTopics == 0 {
		out = binary.AppendUvarint(out, uint64(len(e.who.topics)))
		for _, t := range e.who.topics {
			out = appendString(out, t)
		}
	}
	if f&batchTraceparent != 0 {
		return append(out, e.trace[:]...)
	}
	return appendString(out, e.traceString())
}

func appendBatchRecord(out []byte, r *Record, partial bool, prev *Record) []byte {
	var f byte
	if r.Ended {
		f |= batchEnded
	}
	if partial {
		f |= batchPartial
	}
	if isHexSession(r.Session) {
		f |= batchHexSession
	}
	if isTraceparent(r.Trace) {
		f |= batchTraceparent
	}
	if prev != nil && prev.Node == r.Node && prev.Region == r.Region {
		f |= batchSameOwner
	}
	if prev != nil && sameStrings(prev.Topics, r.Topics) {
		f |= batchSameTopics
	}
	out = append(out, f)
	if f&batchHexSession != 0 {
		for i := 0; i < len(r.Session); i += 2 {
			hi, _ := unhex(r.Session[i])
			lo, _ := unhex(r.Session[i+1])
			out = append(out, hi<<4|lo)
		}
	} else {
		out = appendString(out, r.Session)
	}
	if f&batchSameOwner == 0 {
		out = appendString(out, r.Node)
		out = appendString(out, r.Region)
	}
	out = binary.AppendUvarint(out, r.Incarnation)
	out = binary.AppendUvarint(out, unixNano(r.Since))
	if r.Ended {
		out = binary.AppendUvarint(out, max(unixNano(r.EndedAt), 1))
	}
	if f&batchSameTopics == 0 {
		out = binary.AppendUvarint(out, uint64(len(r.Topics)))
		for _, t := range r.Topics {
			out = appendString(out, t)
		}
	}
	if f&batchTraceparent != 0 {
		return appendPackedTrace(out, r.Trace)
	}
	return appendString(out, r.Trace)
}

func appendString(out []byte, s string) []byte {
	out = binary.AppendUvarint(out, uint64(len(s)))
	return append(out, s...)
}

func unixNano(t time.Time) uint64 {
	if t.IsZero() {
		return 0
	}
	return uint64(max(t.UnixNano(), 0))
}

func sameStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// isHexSession reports whether s is 16 lower-case hex digits
// (push/node.FormatSessionID's form), which travel as 8 bytes.
func isHexSession(s string) bool {
	if len(s) != 16 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if _, ok := unhex(s[i]); !ok {
			return false
		}
	}
	return true
}

// A msgBatch is validated whole when it is decoded (a malformed batch is
// dropped before any of its records is applied), without building its
// records: validation reads the bytes in place. The records are built one
// at a time when they are applied (message.each), so a batch costs no
// []Record and no per-record strings beyond the session id and trace.

// batchReader walks a msgBatch payload; the first error sticks.
type batchReader struct {
	p   []byte
	err error
}

func (r *batchReader) fail(what string) {
	if r.err == nil {
		r.err = fmt.Errorf("%w: batch: bad %s", ErrMalformed, what)
	}
	r.p = nil
}

func (r *batchReader) uvarint(what string) uint64 {
	v, k := binary.Uvarint(r.p)
	if k <= 0 {
		r.fail(what)
		return 0
	}
	r.p = r.p[k:]
	return v
}

func (r *batchReader) bytes(n int, what string) []byte {
	if n > len(r.p) {
		r.fail(what)
		return nil
	}
	b := r.p[:n]
	r.p = r.p[n:]
	return b
}

// str reads a length-prefixed string of at most max bytes that must be
// printable (and non-empty if nonEmpty); it stays in the message buffer.
func (r *batchReader) str(max int, nonEmpty bool, what string) []byte {
	n := r.uvarint(what)
	if n > uint64(max) {
		r.fail(what)
		return nil
	}
	b := r.bytes(int(n), what)
	if r.err == nil && ((nonEmpty && len(b) == 0) || !printableBytes(b)) {
		r.fail(what)
	}
	return b
}

func (r *batchReader) nanos(what string) int64 {
	v := r.uvarint(what)
	if v > math.MaxInt64 {
		r.fail(what)
		return 0
	}
	return int64(v)
}

// rawRecord is one record of a msgBatch as it lies in the message: byte
// slices into the buffer, validated.
type rawRecord struct {
	flags                 byte
	session, node, region []byte
	inc                   uint64
	since, endedAt        int64
	topics                []byte // count and strings as encoded, unless batchSameTopics
	trace                 []byte
}

// next reads and validates one record (wireRecord.record's checks). first
// says whether it is the batch's first record (which cannot repeat a
// previous owner or topic list).
func (r *batchReader) next(first bool) rawRecord {
	var x rawRecord
	f := r.bytes(1, "flags")
	if r.err != nil {
		return x
	}
	x.flags = f[0]
	if x.flags&^batchFlags != 0 || (first && x.flags&(batchSameOwner|batchSameTopics) != 0) {
		r.fail("flags")
		return x
	}
	if x.flags&batchHexSession != 0 {
		x.session = r.bytes(8, "session")
	} else {
		x.session = r.str(MaxSessionLen, true, "session")
	}
	if x.flags&batchSameOwner == 0 {
		x.node = r.str(MaxNodeNameLen, true, "node name")
		x.region = r.str(MaxRegionLen, false, "region")
	}
	if x.inc = r.uvarint("incarnation"); x.inc == 0 {
		r.fail("incarnation")
	}
	x.since = r.nanos("since")
	if x.flags&batchEnded != 0 {
		if x.endedAt = r.nanos("ended at"); x.endedAt == 0 {
			r.fail("ended at")
		}
	}
	if x.flags&batchSameTopics == 0 {
		start := r.p
		k := r.uvarint("topic count")
		if k > MaxTopics {
			r.fail("topic count")
			k = 0 // not a loop of up to 2^64 failed reads (FuzzDecodeMessage found it)
		}
		for range k {
			r.str(MaxTopicLen, true, "topic")
		}
		if r.err == nil {
			x.topics = start[:len(start)-len(r.p)]
		}
	}
	if x.flags&batchTraceparent != 0 {
		x.trace = r.bytes(packedTraceLen, "trace")
	} else {
		x.trace = r.str(MaxTraceLen, false, "trace")
	}
	return x
}

// decodeBatch validates a msgBatch payload (after the two header bytes)
// and sets m.from, m.batch and m.nbatch.
func decodeBatch(p []byte, m *message) error {
	r := &batchReader{p: p}
	from := r.str(MaxNodeNameLen, true, "sender")
	n := r.uvarint("record count")
	// A record takes at least 4 bytes (flags, session, incarnation, since).
	if r.err != nil || n > uint64(len(r.p))/4 {
		r.fail("record count")
		return r.err
	}
	recs := r.p
	for i := range n {
		r.next(i == 0)
		if r.err != nil {
			return r.err
		}
	}
	if len(r.p) != 0 {
		return fmt.Errorf("%w: batch: %d bytes after the last record", ErrMalformed, len(r.p))
	}
	m.from, m.batch, m.nbatch = string(from), recs, int(n)
	return nil
}

// eachBatched calls fn with every record of a validated batch, in order,
// and its partial flag. The owner strings and topic lists of consecutive
// records are shared (the records are read only).
func eachBatched(recs []byte, n int, fn func(Record, bool)) {
	r := &batchReader{p: recs}
	var prev Record
	for i := range n {
		x := r.next(i == 0)
		if r.err != nil { // cannot happen: decodeBatch validated it
			return
		}
		rec := Record{Incarnation: x.inc, Node: prev.Node, Region: prev.Region, Topics: prev.Topics}
		if x.flags&batchHexSession != 0 {
			rec.Session = unpackHexSession(x.session)
		} else {
			rec.Session = string(x.session)
		}
		if x.flags&batchSameOwner == 0 {
			rec.Node, rec.Region = string(x.node), string(x.region)
		}
		if x.since != 0 {
			rec.Since = time.Unix(0, x.since)
		}
		if x.flags&batchEnded != 0 {
			rec.Ended, rec.EndedAt = true, time.Unix(0, x.endedAt)
		}
		if x.flags&batchSameTopics == 0 {
			rec.Topics = decodeTopics(x.topics)
		}
		if x.flags&batchTraceparent != 0 {
			rec.Trace = unpackTraceBytes(x.trace)
		} else {
			rec.Trace = string(x.trace)
		}
		fn(rec, x.flags&batchPartial != 0)
		prev = rec
	}
}

func decodeTopics(b []byte) []string {
	r := &batchReader{p: b}
	k := r.uvarint("topic count")
	if k == 0 {
		return nil
	}
	ts := make([]string, k)
	for i := range ts {
		ts[i] = string(r.str(MaxTopicLen, true, "topic"))
	}
	return ts
}

func printableBytes(b []byte) bool {
	for _, c := range b {
		if c < 0x20 || c == 0x7f {
			return false
		}
	}
	return utf8.Valid(b)
}

func unpackHexSession(b []byte) string {
	if b == nil {
		return ""
	}
	const hexd = "0123456789abcdef"
	var out [16]byte
	for i, c := range b {
		out[2*i], out[2*i+1] = hexd[c>>4], hexd[c&15]
	}
	return string(out[:])
}

// unpackTraceBytes is unpackTrace of the 26 packed bytes without building
// the packed string first.
func unpackTraceBytes(b []byte) string {
	const hexd = "0123456789abcdef"
	var out [traceparentLen]byte
	j := 0
	for i, c := range b {
		switch i {
		case 1, 17, 25:
			out[j] = '-'
			j++
		}
		out[j], out[j+1] = hexd[c>>4], hexd[c&15]
		j += 2
	}
	return string(out[:])
}
