package cluster

import "time"

// entry is a stored record in compact form (issue 25: a node holds the
// records it is home of, HomeReplicas/N of the pool's sessions, and each
// must cost little). The session id is the map key and is not repeated;
// owner (with its region) and topic names are interned (a pool has few of them and
// thousands of records share each); times are unix nanoseconds; a W3C
// traceparent is kept in binary (packTrace). A Record is rebuilt on read.
type entry struct {
	who    *origin  // owner and its region, interned
	topics []string // interned names; a one-topic list is shared too
	trace  string   // packTrace form
	inc    uint64
	since  int64 // claim time, unix ns; 0 = zero time
	// at is EndedAt for a tombstone (unix ns), else the local receipt time
	// (expiry of records of unknown owners): one field, 80 bytes an entry.
	at      int64
	ended   bool
	partial bool // topics trimmed in a broadcast; a full copy replaces it
}

// origin is an owner node and its region, shared by all its records.
type origin struct{ node, region string }

// key is what compareRecords reads.
func (e *entry) key() Record { return Record{Node: e.who.node, Incarnation: e.inc, Ended: e.ended} }

// record rebuilds the full Record of session; Topics is a fresh slice.
func (e *entry) record(session string) Record {
	r := Record{Session: session, Node: e.who.node, Region: e.who.region, Incarnation: e.inc,
		Trace: unpackTrace(e.trace), Ended: e.ended}
	if len(e.topics) > 0 {
		r.Topics = append([]string(nil), e.topics...)
	}
	if e.since != 0 {
		r.Since = time.Unix(0, e.since)
	}
	if e.ended {
		r.EndedAt = time.Unix(0, e.at)
	}
	return r
}

// maxInterned bounds the intern table; past it the table starts afresh
// (interning only shares memory, it never changes a value).
const maxInterned = 1 << 14

// interner shares the strings (and one-topic lists) many records repeat.
// Guarded by recMu.
type interner struct {
	strs map[string]string
	ones map[string][]string // topic -> []string{topic}
	whos map[origin]*origin
}

func (in *interner) origin(node, region string) *origin {
	k := origin{node, region}
	if v, ok := in.whos[k]; ok {
		return v
	}
	if in.whos == nil || len(in.whos) >= maxInterned {
		in.whos = make(map[origin]*origin)
	}
	v := &origin{in.str(node), in.str(region)}
	in.whos[*v] = v
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

func (in *interner) topics(ts []string) []string {
	switch len(ts) {
	case 0:
		return nil
	case 1:
		if v, ok := in.ones[ts[0]]; ok {
			return v
		}
		if in.ones == nil || len(in.ones) >= maxInterned {
			in.ones = make(map[string][]string)
		}
		t := in.str(ts[0])
		v := []string{t}
		in.ones[t] = v
		return v
	}
	out := make([]string, len(ts))
	for i, t := range ts {
		out[i] = in.str(t)
	}
	return out
}

// newEntry builds the compact form of r; the result shares no memory with r
// except interned strings.
func (in *interner) entry(r Record, partial bool, now time.Time) *entry {
	e := &entry{who: in.origin(r.Node, r.Region), topics: in.topics(r.Topics),
		trace: packTrace(r.Trace), inc: r.Incarnation, ended: r.Ended, partial: partial, at: now.UnixNano()}
	if !r.Since.IsZero() {
		e.since = r.Since.UnixNano()
	}
	if r.Ended {
		e.at = r.EndedAt.UnixNano()
	}
	return e
}

// A W3C traceparent ("00-" 32 hex "-" 16 hex "-" 2 hex, 55 bytes, lower
// case) is packed into 26 bytes behind a zero byte, which no valid trace
// string starts with (ValidateClaim: printable). Anything else is kept as
// it is.
const traceparentLen = 55

func packTrace(s string) string {
	if !isTraceparent(s) {
		return s
	}
	b := make([]byte, 1, 27)
	return string(appendPackedTrace(b, s))
}

// isTraceparent reports whether s has the traceparent form packTrace packs.
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

func unpackTrace(s string) string {
	if len(s) != 27 || s[0] != 0 {
		return s
	}
	const hexd = "0123456789abcdef"
	out := make([]byte, 0, traceparentLen)
	for i := 1; i < len(s); i++ {
		switch i {
		case 2, 18, 26:
			out = append(out, '-')
		}
		out = append(out, hexd[s[i]>>4], hexd[s[i]&15])
	}
	return string(out)
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
