package cluster

import (
	"bytes"
	"encoding/json"
	"fmt"
	"time"
	"unicode/utf8"
)

// Wire format of the messages this package sends through memberlist (user
// broadcasts, reliable messages and push/pull user state):
//
//	byte 0   wire version (wireVersion); other versions are counted and dropped
//	byte 1   message kind (msgRecord, msgState, msgDisconnect, msgQuery, msgAnswer,
//	         msgDigest, msgBatch, msgSummary, msgDigestReq, msgBucketDigest)
//	byte 2…  JSON payload (wirePayload) with one-letter keys; for msgDigest,
//	         msgBatch and the summary messages a binary payload (digest.go,
//	         batch.go, summary.go)
//
// JSON keeps the format debuggable and forward compatible (unknown keys are
// ignored); short keys and unix-nanosecond times keep a typical record under
// 250 bytes. A record broadcast must fit one UDP packet, so encodeRecordMsg
// trims topics to the budget and marks the record partial; the full topic
// list travels in push/pull state.
const (
	wireVersion byte = 1

	msgRecord     byte = 1 // one ownership record: gossip broadcast or direct notice
	msgState      byte = 2 // full state for push/pull (LocalState/MergeRemoteState)
	msgDisconnect byte = 3 // admin disconnect request sent to the owner
	msgQuery      byte = 4 // ask a peer for a session's record or its sessions on a topic
	msgAnswer     byte = 5 // records answering a msgQuery
	msgDigest     byte = 6 // push/pull digest (digest.go): binary, not JSON
	msgBatch      byte = 7 // forwarded records (batch.go): binary, not JSON
	// msgSummary (periodic push/pull), msgDigestReq and msgBucketDigest
	// (reliable messages): summary.go, binary.
	msgSummary      byte = 8
	msgDigestReq    byte = 9
	msgBucketDigest byte = 10

	maxSmallMsg = 128 << 10 // record and disconnect messages (a full record is < 80 KiB)
	maxStateMsg = 24 << 20  // push/pull state; memberlist itself caps it at 20 MiB
	// stateBudget is where LocalState stops adding records; the rest waits
	// for broadcasts or a later push/pull (Stats.StateTruncated).
	stateBudget = 16 << 20
)

// wireRecord is the encoded form of Record.
type wireRecord struct {
	S string   `json:"s"`           // session
	N string   `json:"n"`           // owner node
	R string   `json:"r,omitempty"` // owner region
	I uint64   `json:"i"`           // incarnation
	T []string `json:"t,omitempty"` // topics
	C int64    `json:"c,omitempty"` // since, unix ns
	X string   `json:"x,omitempty"` // trace
	E int64    `json:"e,omitempty"` // ended at, unix ns; 0 = live
	P bool     `json:"p,omitempty"` // topics trimmed to fit a broadcast
}

type wirePayload struct {
	From string       `json:"f"`
	Rec  *wireRecord  `json:"r,omitempty"`  // msgRecord
	Recs []wireRecord `json:"rs,omitempty"` // msgState
	S    string       `json:"s,omitempty"`  // msgDisconnect, msgQuery: session
	I    uint64       `json:"i,omitempty"`  // msgDisconnect: incarnation
	Q    uint64       `json:"q,omitempty"`  // msgQuery, msgAnswer: query id
	T    string       `json:"t,omitempty"`  // msgQuery: topic
}

// message is a decoded, validated wire message.
type message struct {
	kind    byte
	from    string
	rec     Record     // msgRecord
	partial bool       // msgRecord: rec.Topics was trimmed
	recs    []Record   // msgState, msgAnswer
	parts   []bool     // msgState, msgAnswer: partial flags, parallel to recs
	batch   []byte     // msgBatch: its validated records, still encoded (each)
	nbatch  int        // msgBatch: how many
	session string     // msgDisconnect, msgQuery
	inc     uint64     // msgDisconnect
	qid     uint64     // msgQuery, msgAnswer
	topic   string     // msgQuery
	dig     digest     // msgDigest, msgBucketDigest
	sum     summary    // msgSummary
	mask    bucketMask // msgDigestReq, msgBucketDigest
}

func toWire(r Record, partial bool) wireRecord {
	w := wireRecord{S: r.Session, N: r.Node, R: r.Region, I: r.Incarnation, T: r.Topics, X: r.Trace, P: partial}
	if !r.Since.IsZero() {
		w.C = r.Since.UnixNano()
	}
	if r.Ended {
		w.E = r.EndedAt.UnixNano()
		if w.E <= 0 {
			w.E = 1
		}
	}
	return w
}

func (w wireRecord) record() (Record, error) {
	r := Record{Session: w.S, Node: w.N, Region: w.R, Incarnation: w.I, Trace: w.X}
	if err := validateSession(w.S); err != nil {
		return Record{}, err
	}
	if w.N == "" || len(w.N) > MaxNodeNameLen || !printable(w.N) {
		return Record{}, fmt.Errorf("%w: bad node name", ErrMalformed)
	}
	if len(w.R) > MaxRegionLen || !printable(w.R) {
		return Record{}, fmt.Errorf("%w: bad region", ErrMalformed)
	}
	if w.I == 0 {
		return Record{}, fmt.Errorf("%w: zero incarnation", ErrMalformed)
	}
	if w.C < 0 || w.E < 0 {
		return Record{}, fmt.Errorf("%w: negative time", ErrMalformed)
	}
	if err := validateTopics(w.T); err != nil {
		return Record{}, err
	}
	if err := validateTrace(w.X); err != nil {
		return Record{}, err
	}
	if len(w.T) > 0 {
		r.Topics = append([]string(nil), w.T...)
	}
	if w.C != 0 {
		r.Since = time.Unix(0, w.C)
	}
	if w.E != 0 {
		r.Ended = true
		r.EndedAt = time.Unix(0, w.E)
	}
	return r, nil
}

func validateSession(s string) error {
	if s == "" || len(s) > MaxSessionLen || !printable(s) {
		return fmt.Errorf("%w: session id must be 1..%d printable bytes", ErrMalformed, MaxSessionLen)
	}
	return nil
}

func validateTopics(ts []string) error {
	if len(ts) > MaxTopics {
		return fmt.Errorf("%w: %d topics, at most %d", ErrMalformed, len(ts), MaxTopics)
	}
	for _, t := range ts {
		if t == "" || len(t) > MaxTopicLen || !printable(t) {
			return fmt.Errorf("%w: topic must be 1..%d printable bytes", ErrMalformed, MaxTopicLen)
		}
	}
	return nil
}

func validateTrace(s string) error {
	if len(s) > MaxTraceLen || !printable(s) {
		return fmt.Errorf("%w: trace must be at most %d printable bytes", ErrMalformed, MaxTraceLen)
	}
	return nil
}

func marshalCompact(v any) []byte {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	// Encoding plain structs of strings and integers cannot fail.
	_ = enc.Encode(v)
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
}

func frame(kind byte, payload []byte) []byte {
	b := make([]byte, 0, 2+len(payload))
	b = append(b, wireVersion, kind)
	return append(b, payload...)
}

// encodeRecordMsg encodes r as a msgRecord. When limit > 0 and the message
// is longer, topics are trimmed (keeping the longest prefix that fits) and
// the record is marked partial; a typical record without topics is far below
// the UDP budget computed in New. It returns nil if nothing fits.
func encodeRecordMsg(from string, r Record, partial bool, limit int) (msg []byte, trimmed bool) {
	w := toWire(r, partial)
	msg = frame(msgRecord, marshalCompact(wirePayload{From: from, Rec: &w}))
	if limit <= 0 || len(msg) <= limit {
		return msg, false
	}
	// Binary search the longest topic prefix that fits.
	all := w.T
	lo, hi := 0, len(all)-1 // lo always fits (checked below), hi+1 does not
	w.P = true
	fits := func(k int) []byte {
		w.T = all[:k]
		m := frame(msgRecord, marshalCompact(wirePayload{From: from, Rec: &w}))
		if len(m) <= limit {
			return m
		}
		return nil
	}
	best := fits(0)
	if best == nil {
		// Only with heavily escaped identifiers: drop the trace too (the
		// full record follows by push/pull). Nil if even that is too big.
		w.X = ""
		best = fits(0)
		if best == nil {
			return nil, true
		}
		return best, true
	}
	for lo < hi {
		mid := (lo + hi + 1) / 2
		if m := fits(mid); m != nil {
			lo, best = mid, m
		} else {
			hi = mid - 1
		}
	}
	return best, true
}

// encodeState encodes records as a forwarded batch (msgBatch, batch.go),
// stopping before budget bytes. It returns the message and the number of
// records left out.
func encodeState(from string, recs []Record, parts []bool, budget int) ([]byte, int) {
	return encodeBatch(from, recs, parts, budget)
}

// encodeStateJSON encodes records as a JSON msgState, the form of nodes
// from before msgBatch (they do not decode msgBatch).
func encodeStateJSON(from string, recs []Record, parts []bool, budget int) ([]byte, int) {
	return encodeRecords(msgState, from, 0, recs, parts, budget)
}

// encodeAnswer encodes records answering query qid, within maxSmallMsg.
func encodeAnswer(from string, qid uint64, recs []Record) []byte {
	b, _ := encodeRecords(msgAnswer, from, qid, recs, make([]bool, len(recs)), batchBudget)
	return b
}

func encodeQuery(from string, qid uint64, q query) []byte {
	return frame(msgQuery, marshalCompact(wirePayload{From: from, Q: qid, S: q.session, T: q.topic}))
}

func encodeRecords(kind byte, from string, qid uint64, recs []Record, parts []bool, budget int) ([]byte, int) {
	var buf bytes.Buffer
	buf.WriteByte(wireVersion)
	buf.WriteByte(kind)
	buf.WriteString(`{"f":`)
	buf.Write(marshalCompact(from))
	if qid != 0 {
		buf.WriteString(`,"q":`)
		buf.Write(marshalCompact(qid))
	}
	buf.WriteString(`,"rs":[`)
	n := 0
	for i, r := range recs {
		one := marshalCompact(toWire(r, parts[i]))
		if budget > 0 && buf.Len()+len(one)+3 > budget {
			break
		}
		if n > 0 {
			buf.WriteByte(',')
		}
		buf.Write(one)
		n++
	}
	buf.WriteString(`]}`)
	return buf.Bytes(), len(recs) - n
}

func encodeDisconnect(from, session string, inc uint64) []byte {
	return frame(msgDisconnect, marshalCompact(wirePayload{From: from, S: session, I: inc}))
}

// decodeMessage decodes and validates one message. It never panics; any
// violation returns an error wrapping ErrMalformed.
func decodeMessage(b []byte) (message, error) {
	var m message
	if len(b) < 2 {
		return m, fmt.Errorf("%w: %d bytes", ErrMalformed, len(b))
	}
	if b[0] != wireVersion {
		return m, fmt.Errorf("%w: wire version %d, want %d", ErrMalformed, b[0], wireVersion)
	}
	m.kind = b[1]
	limit := maxSmallMsg
	if m.kind == msgState || m.kind == msgDigest || m.kind == msgSummary {
		limit = maxStateMsg
	}
	if len(b) > limit {
		return m, fmt.Errorf("%w: %d bytes, at most %d for kind %d", ErrMalformed, len(b), limit, m.kind)
	}
	switch m.kind {
	case msgDigest:
		d, err := decodeDigest(b[2:])
		m.from, m.dig = d.from, d
		return m, err
	case msgBatch:
		return m, decodeBatch(b[2:], &m)
	case msgSummary:
		s, err := decodeSummary(b[2:])
		m.from, m.sum = s.from, s
		return m, err
	case msgDigestReq:
		return m, decodeDigestReq(b[2:], &m)
	case msgBucketDigest:
		return m, decodeBucketDigest(b[2:], &m)
	}
	if !utf8.Valid(b[2:]) { // json would replace bad bytes instead of failing
		return m, fmt.Errorf("%w: payload is not UTF-8", ErrMalformed)
	}
	var p wirePayload
	if err := json.Unmarshal(b[2:], &p); err != nil {
		return m, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	if p.From == "" || len(p.From) > MaxNodeNameLen || !printable(p.From) {
		return m, fmt.Errorf("%w: bad sender", ErrMalformed)
	}
	m.from = p.From
	switch m.kind {
	case msgRecord:
		if p.Rec == nil {
			return m, fmt.Errorf("%w: record message without record", ErrMalformed)
		}
		r, err := p.Rec.record()
		if err != nil {
			return m, err
		}
		m.rec, m.partial = r, p.Rec.P
	case msgState, msgAnswer:
		if m.kind == msgAnswer {
			m.qid = p.Q
		}
		m.recs = make([]Record, 0, len(p.Recs))
		m.parts = make([]bool, 0, len(p.Recs))
		for _, w := range p.Recs {
			r, err := w.record()
			if err != nil {
				return m, err
			}
			m.recs = append(m.recs, r)
			m.parts = append(m.parts, w.P)
		}
	case msgDisconnect:
		if err := validateSession(p.S); err != nil {
			return m, err
		}
		m.session, m.inc = p.S, p.I
	case msgQuery:
		switch {
		case p.Q == 0:
			return m, fmt.Errorf("%w: query without id", ErrMalformed)
		case (p.S == "") == (p.T == ""):
			return m, fmt.Errorf("%w: a query names a session or a topic", ErrMalformed)
		case p.S != "":
			if err := validateSession(p.S); err != nil {
				return m, err
			}
		default:
			if err := validateTopics([]string{p.T}); err != nil {
				return m, err
			}
		}
		m.qid, m.session, m.topic = p.Q, p.S, p.T
	default:
		return m, fmt.Errorf("%w: unknown message kind %d", ErrMalformed, m.kind)
	}
	return m, nil
}

// count is the number of records a msgState, msgAnswer or msgBatch carries.
func (m *message) count() int { return len(m.recs) + m.nbatch }

// each calls fn with every record the message carries and its partial flag.
func (m *message) each(fn func(Record, bool)) {
	for i, r := range m.recs {
		fn(r, m.parts[i])
	}
	eachBatched(m.batch, m.nbatch, fn)
}
