package cluster

import "iter"

// The record table (issue 25, ADR 0031): a node holds its own records and
// those it is home of, and on a node serving nothing the homed records are
// the whole of what ownership costs, so each must take little. Entries are
// kept by value in fixed-size chunks (no allocation and no pointer per
// record; a chunk is never moved, so a *entry stays valid until its
// session is deleted), and the map from session id to slot is keyed by a
// uint64 for Herald's session ids (push/node.FormatSessionID: 16
// lower-case hex digits, which is 8 bytes of information) and by the
// string only for any other form (ValidateClaim accepts any printable id).
// Per homed record: the 64-byte entry and a 16-byte map slot, against an
// 80-byte entry, its pointer, a 16-byte id string and a 32-byte packed
// trace before.
//
// Like a Go map, the table does not shrink: slots freed by deletions are
// reused, so it stays at the most records it held at once.

// chunkLen is the number of entries per chunk (32 KiB).
const chunkLen = 512

// sid is a session id in key form: the value of its 16 hex digits when it
// is a hex id (s == ""), else the id itself.
type sid struct {
	h uint64
	s string
}

// sidOf returns the key form of session.
func sidOf(session string) sid {
	if !isHexSession(session) {
		return sid{s: session}
	}
	var h uint64
	for i := 0; i < len(session); i++ {
		d, _ := unhex(session[i])
		h = h<<4 | uint64(d)
	}
	return sid{h: h}
}

const hexDigits = "0123456789abcdef"

// String returns the session id (allocating for a hex id).
func (k sid) String() string {
	if k.s != "" {
		return k.s
	}
	var b [16]byte
	for i := range b {
		b[i] = hexDigits[k.h>>(60-4*i)&15]
	}
	return string(b[:])
}

// fnv is fnvAdd(fnvOffset, k.String()) without building the string: the
// placement and digest hashes of every record held are computed from it
// at every push/pull and membership change.
func (k sid) fnv() uint64 {
	if k.s != "" {
		return fnvAdd(fnvOffset, k.s)
	}
	h := fnvOffset
	for i := 60; i >= 0; i -= 4 {
		h = (h ^ uint64(hexDigits[k.h>>i&15])) * fnvPrime
	}
	return h
}

// sidSet is a set of sessions, keyed like the table: 8 bytes a Herald
// session id instead of the 24 of a sid (the topic index holds one per
// stream served here).
type sidSet struct {
	hex map[uint64]struct{}
	str map[string]struct{}
}

func (s *sidSet) add(k sid) {
	if k.s != "" {
		if s.str == nil {
			s.str = make(map[string]struct{})
		}
		s.str[k.s] = struct{}{}
		return
	}
	if s.hex == nil {
		s.hex = make(map[uint64]struct{})
	}
	s.hex[k.h] = struct{}{}
}

func (s *sidSet) del(k sid) {
	if k.s != "" {
		delete(s.str, k.s)
	} else {
		delete(s.hex, k.h)
	}
}

func (s *sidSet) len() int { return len(s.hex) + len(s.str) }

// all yields every session of the set.
func (s *sidSet) all() iter.Seq[sid] {
	return func(yield func(sid) bool) {
		for h := range s.hex {
			if !yield(sid{h: h}) {
				return
			}
		}
		for k := range s.str {
			if !yield(sid{s: k}) {
				return
			}
		}
	}
}

// table maps session ids to entries. Guarded by recMu.
type table struct {
	hex    map[uint64]uint32
	str    map[string]uint32
	chunks []*[chunkLen]entry
	free   []uint32 // slots freed by del, reused first
	n      int
}

func newTable() table {
	return table{hex: make(map[uint64]uint32), str: make(map[string]uint32)}
}

func (t *table) len() int { return t.n }

func (t *table) at(i uint32) *entry { return &t.chunks[i/chunkLen][i%chunkLen] }

func (t *table) slot(k sid) (uint32, bool) {
	if k.s != "" {
		i, ok := t.str[k.s]
		return i, ok
	}
	i, ok := t.hex[k.h]
	return i, ok
}

// get returns session's entry, or nil. The pointer is valid until the
// session is deleted or put again.
func (t *table) get(session string) *entry { return t.getK(sidOf(session)) }

func (t *table) getK(k sid) *entry {
	if i, ok := t.slot(k); ok {
		return t.at(i)
	}
	return nil
}

// put stores e as session's entry, in place if it has one.
func (t *table) put(k sid, e entry) {
	if i, ok := t.slot(k); ok {
		*t.at(i) = e
		return
	}
	var i uint32
	if n := len(t.free); n > 0 {
		i, t.free = t.free[n-1], t.free[:n-1]
	} else {
		i = uint32(len(t.chunks) * chunkLen)
		t.chunks = append(t.chunks, new([chunkLen]entry))
		for j := i + chunkLen - 1; j > i; j-- { // lowest slots first
			t.free = append(t.free, j)
		}
	}
	*t.at(i) = e
	if k.s != "" {
		t.str[k.s] = i
	} else {
		t.hex[k.h] = i
	}
	t.n++
}

// del forgets session's entry, if any.
func (t *table) del(k sid) {
	i, ok := t.slot(k)
	if !ok {
		return
	}
	if k.s != "" {
		delete(t.str, k.s)
	} else {
		delete(t.hex, k.h)
	}
	*t.at(i) = entry{} // drop its pointers for the GC
	t.free = append(t.free, i)
	t.n--
}

// all yields every session and its entry. The table must not be changed
// during the iteration.
func (t *table) all() iter.Seq2[sid, *entry] {
	return func(yield func(sid, *entry) bool) {
		for h, i := range t.hex {
			if !yield(sid{h: h}, t.at(i)) {
				return
			}
		}
		for s, i := range t.str {
			if !yield(sid{s: s}, t.at(i)) {
				return
			}
		}
	}
}
