package cluster

import (
	"math"
	"time"
)

// entry is a stored record in compact form (issue 25: a node holds the
// records it is home of, HomeReplicas/N of the pool's sessions, and each
// must cost little). It is kept by value in the record table (table.go),
// whose key is the session id. The owner, its region and the topic list
// are one interned pointer (a pool has few owners and topics, and
// thousands of records share each); a W3C traceparent is kept packed
// inline; the claim time is not stored when it equals the incarnation
// (Claim's usual case) or is zero. Anything else (another trace form, a
// claim time of its own) goes to ext, allocated only then. 64 bytes.
type entry struct {
	who   *origin   // owner, its region and the topics, interned
	ext   *entryExt // nil for Herald's records
	inc   uint64
	at    int64 // EndedAt for a tombstone (unix ns), else the local receipt time (expiry of records of unknown owners)
	trace [packedTraceLen]byte
	flags uint8
}

const (
	entEnded      uint8 = 1 << iota
	entPartial          // topics trimmed in a broadcast; a full copy replaces it
	entTrace            // trace holds a packed traceparent
	entSinceZero        // claim time is the zero time
	entSinceIsInc       // claim time (unix ns) equals the incarnation
	// entServed marks this node's own live record of a claim it serves
	// (Claim, until Release, a revocation or an admin disconnect): the
	// served claims are a flag of their entry, not a map of their own
	// (issue 25: one map slot less per stream). Never sent.
	entServed
)

// entryExt holds what the inline fields cannot.
type entryExt struct {
	since int64  // claim time, unix ns, unless entSinceZero or entSinceIsInc
	trace string // unless entTrace
}

// origin is an owner node, its region and a topic list, shared by the
// records that have them all in common.
type origin struct {
	node, region string
	topics       []string
}

func (e *entry) ended() bool      { return e.flags&entEnded != 0 }
func (e *entry) served() bool     { return e.flags&entServed != 0 }
func (e *entry) partial() bool    { return e.flags&entPartial != 0 }
func (e *entry) topics() []string { return e.who.topics }

// since is the claim time in unix ns, 0 for the zero time.
func (e *entry) since() int64 {
	switch {
	case e.flags&entSinceZero != 0:
		return 0
	case e.flags&entSinceIsInc != 0:
		return int64(e.inc)
	case e.ext != nil:
		return e.ext.since
	}
	return 0
}

// traceString is the record's trace as claimed.
func (e *entry) traceString() string {
	if e.flags&entTrace != 0 {
		return unpackTraceBytes(e.trace[:])
	}
	if e.ext != nil {
		return e.ext.trace
	}
	return ""
}

// key is what compareRecords reads.
func (e *entry) key() Record { return Record{Node: e.who.node, Incarnation: e.inc, Ended: e.ended()} }

// record rebuilds the full Record of session; Topics is a fresh slice.
func (e *entry) record(session string) Record {
	r := Record{Session: session, Node: e.who.node, Region: e.who.region, Incarnation: e.inc,
		Trace: e.traceString(), Ended: e.ended()}
	if ts := e.topics(); len(ts) > 0 {
		r.Topics = append([]string(nil), ts...)
	}
	if s := e.since(); e.flags&entSinceZero == 0 {
		r.Since = time.Unix(0, s)
	}
	if e.ended() {
		r.EndedAt = time.Unix(0, e.at)
	}
	return r
}

// maxInterned bounds the intern table; past it the table starts afresh
// (interning only shares memory, it never changes a value).
const maxInterned = 1 << 14

// interner shares the strings and origins many records repeat. Guarded by
// recMu.
type interner struct {
	strs map[string]string
	whos map[originKey]*origin
}

// originKey identifies an origin with at most one topic.
type originKey struct{ node, region, topic string }

func (in *interner) origin(node, region string, topics []string) *origin {
	if len(topics) > 1 { // not shared: rare in Herald (one topic a stream)
		ts := make([]string, len(topics))
		for i, t := range topics {
			ts[i] = in.str(t)
		}
		return &origin{in.str(node), in.str(region), ts}
	}
	k := originKey{node: node, region: region}
	if len(topics) == 1 {
		k.topic = topics[0]
	}
	if v, ok := in.whos[k]; ok {
		return v
	}
	if in.whos == nil || len(in.whos) >= maxInterned {
		in.whos = make(map[originKey]*origin)
	}
	v := &origin{node: in.str(node), region: in.str(region)}
	if len(topics) == 1 {
		v.topics = []string{in.str(topics[0])}
	}
	in.whos[originKey{v.node, v.region, k.topic}] = v
	return v
}

func (in *interner) str(s string) string {
	if s == "" {
		return ""
	}
	if v, ok := in.strs[s]; ok {
		return v
	}
	if in.strs == nil || len(in.strs) >= maxInterned {
		in.strs = make(map[string]string)
	}
	in.strs[s] = s
	return s
}

// entry builds the compact form of r; the result shares no memory with r
// except interned strings.
func (in *interner) entry(r Record, partial bool, now time.Time) entry {
	e := entry{who: in.origin(r.Node, r.Region, r.Topics), inc: r.Incarnation, at: now.UnixNano()}
	if r.Ended {
		e.flags |= entEnded
		e.at = r.EndedAt.UnixNano()
	}
	if partial {
		e.flags |= entPartial
	}
	var ext entryExt
	switch since := r.Since.UnixNano(); {
	case r.Since.IsZero():
		e.flags |= entSinceZero
	case r.Incarnation <= math.MaxInt64 && since == int64(r.Incarnation):
		e.flags |= entSinceIsInc
	default:
		ext.since = since
	}
	if isTraceparent(r.Trace) {
		e.flags |= entTrace
		appendPackedTrace(e.trace[:0], r.Trace)
	} else {
		ext.trace = r.Trace
	}
	if ext != (entryExt{}) {
		e.ext = &ext
	}
	return e
}

// A W3C traceparent ("00-" 32 hex "-" 16 hex "-" 2 hex, 55 bytes, lower
// case) is packed into 26 bytes (entry.trace, msgBatch); anything else is
// kept as it is.
const traceparentLen = 55

// isTraceparent reports whether s has the traceparent form that is packed.
func isTraceparent(s string) bool {
	if len(s) != traceparentLen || s[2] != '-' || s[35] != '-' || s[52] != '-' {
		return false
	}
	for i := 0; i < len(s); i++ {
		if _, ok := unhex(s[i]); !ok && i != 2 && i != 35 && i != 52 {
			return false
		}
	}
	return true
}

// appendPackedTrace appends the 26 bytes of traceparent s (isTraceparent).
func appendPackedTrace(b []byte, s string) []byte {
	for _, part := range [...]string{s[0:2], s[3:35], s[36:52], s[53:55]} {
		for i := 0; i < len(part); i += 2 {
			hi, _ := unhex(part[i])
			lo, _ := unhex(part[i+1])
			b = append(b, hi<<4|lo)
		}
	}
	return b
}

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	}
	return 0, false
}
