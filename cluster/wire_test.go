package cluster

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"
)

func sampleRecord() Record {
	return Record{
		Session: "sess-01HZX", Node: "herald-0", Region: "eu-west-1", Incarnation: 1732240000123456789,
		Topics: []string{"orders", "chat.room-1"}, Since: time.Unix(0, 1732240000123456789),
		Trace: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
	}
}

func TestRecordRoundTrip(t *testing.T) {
	r := sampleRecord()
	msg, trimmed := encodeRecordMsg("herald-1", r, false, 1300)
	if trimmed || len(msg) > 300 {
		t.Fatalf("typical record: %d bytes, trimmed %v", len(msg), trimmed)
	}
	m, err := decodeMessage(msg)
	if err != nil || m.kind != msgRecord || m.from != "herald-1" || m.partial || !reflect.DeepEqual(m.rec, r) {
		t.Fatalf("decode = %+v, %v", m, err)
	}
	ended := r
	ended.Ended, ended.EndedAt = true, time.Unix(0, 1732240009000000000)
	state, left := encodeState("herald-1", []Record{r, ended}, []bool{false, true}, 0)
	m, err = decodeMessage(state)
	recs, parts := m.all()
	if err != nil || left != 0 || len(recs) != 2 || !reflect.DeepEqual(recs[1], ended) || !parts[1] {
		t.Fatalf("batch decode = %+v, %v", m, err)
	}
	m, err = decodeMessage(encodeDisconnect("x", "s", 9))
	if err != nil || m.session != "s" || m.inc != 9 || m.kind != msgDisconnect {
		t.Fatalf("disconnect decode = %+v, %v", m, err)
	}
	if _, left := encodeState("n", []Record{r, r, r}, []bool{false, false, false}, 200); left == 0 {
		t.Fatalf("batch budget not enforced")
	}
	if _, left := encodeStateJSON("n", []Record{r, r, r}, []bool{false, false, false}, 400); left == 0 {
		t.Fatalf("JSON state budget not enforced")
	}
	state, _ = encodeStateJSON("herald-1", []Record{r, ended}, []bool{false, true}, 0)
	m, err = decodeMessage(state)
	if err != nil || m.kind != msgState || len(m.recs) != 2 || !reflect.DeepEqual(m.recs[1], ended) || !m.parts[1] {
		t.Fatalf("JSON state (nodes before msgBatch) decode = %+v, %v", m, err)
	}
}

func TestBroadcastTrimmedToBudget(t *testing.T) {
	r := sampleRecord()
	r.Topics = nil
	for i := 0; i < MaxTopics; i++ {
		r.Topics = append(r.Topics, strings.Repeat(string(rune('a'+i%26)), 128))
	}
	const limit = 1300
	msg, trimmed := encodeRecordMsg("n", r, false, limit)
	if !trimmed || len(msg) > limit {
		t.Fatalf("trimmed=%v len=%d", trimmed, len(msg))
	}
	m, err := decodeMessage(msg)
	if err != nil || !m.partial || len(m.rec.Topics) == 0 || !reflect.DeepEqual(m.rec.Topics, r.Topics[:len(m.rec.Topics)]) {
		t.Fatalf("decode = %v partial=%v topics=%d", err, m.partial, len(m.rec.Topics))
	}
	// One more topic would not fit: the prefix is maximal.
	longer := r
	longer.Topics = r.Topics[:len(m.rec.Topics)+1]
	if full, _ := encodeRecordMsg("n", longer, true, 0); len(full) <= limit {
		t.Fatalf("prefix of %d topics is not maximal", len(m.rec.Topics))
	}
}

func TestBroadcastWithoutRoomDropsTraceThenGivesUp(t *testing.T) {
	r := Record{Session: strings.Repeat(`"`, MaxSessionLen), Node: strings.Repeat(`"`, MaxNodeNameLen),
		Region: strings.Repeat(`"`, MaxRegionLen), Incarnation: 1, Trace: strings.Repeat(`"`, MaxTraceLen), Topics: []string{"t"}}
	msg, trimmed := encodeRecordMsg(strings.Repeat(`"`, MaxNodeNameLen), r, false, 1300)
	if !trimmed || msg == nil || len(msg) > 1300 {
		t.Fatalf("trimmed=%v len=%d", trimmed, len(msg))
	}
	if m, err := decodeMessage(msg); err != nil || m.rec.Trace != "" || !m.partial {
		t.Fatalf("decode = %+v, %v", m, err)
	}
	if msg, _ := encodeRecordMsg("n", r, false, 100); msg != nil {
		t.Fatalf("a message over any budget was produced")
	}
}

func TestDecodeRejects(t *testing.T) {
	long := strings.Repeat("x", MaxSessionLen+1)
	cases := map[string][]byte{
		"empty":        nil,
		"version":      {2, msgRecord, '{', '}'},
		"kind":         append([]byte{wireVersion, 99}, `{"f":"n"}`...),
		"no sender":    append([]byte{wireVersion, msgRecord}, `{"r":{"s":"s","n":"n","i":1}}`...),
		"no record":    append([]byte{wireVersion, msgRecord}, `{"f":"n"}`...),
		"long session": append([]byte{wireVersion, msgRecord}, `{"f":"n","r":{"s":"`+long+`","n":"n","i":1}}`...),
		"control char": append([]byte{wireVersion, msgRecord}, `{"f":"n","r":{"s":"a\u0001","n":"n","i":1}}`...),
		"zero inc":     append([]byte{wireVersion, msgRecord}, `{"f":"n","r":{"s":"s","n":"n","i":0}}`...),
		"neg time":     append([]byte{wireVersion, msgRecord}, `{"f":"n","r":{"s":"s","n":"n","i":1,"c":-5}}`...),
		"bad state":    append([]byte{wireVersion, msgState}, `{"f":"n","rs":[{"s":"","n":"n","i":1}]}`...),
		"oversized":    append([]byte{wireVersion, msgRecord}, bytes.Repeat([]byte{' '}, maxSmallMsg)...),
		"type":         append([]byte{wireVersion, msgRecord}, `{"f":1}`...),
		"bad utf-8":    append([]byte{wireVersion, msgRecord}, "{\"f\":\"n\",\"r\":{\"s\":\"a\xff\",\"n\":\"n\",\"i\":1}}"...),
		"topic count":  append([]byte{wireVersion, msgRecord}, `{"f":"n","r":{"s":"s","n":"n","i":1,"t":[`+strings.Repeat(`"t",`, MaxTopics)+`"t"]}}`...),
	}
	for name, b := range cases {
		if _, err := decodeMessage(b); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: err = %v, want ErrMalformed", name, err)
		}
	}
}

// FuzzDecodeMessage checks that no input panics the decoder and that every
// accepted message re-encodes to an equivalent one. `go test` runs the seeds;
// `go test -fuzz FuzzDecodeMessage ./cluster` explores.
func FuzzDecodeMessage(f *testing.F) {
	r := sampleRecord()
	msg, _ := encodeRecordMsg("herald-1", r, false, 0)
	f.Add(msg)
	ended := r
	ended.Ended, ended.EndedAt = true, time.Unix(0, 5)
	msg, _ = encodeRecordMsg("herald-1", ended, true, 0)
	f.Add(msg)
	st, _ := encodeStateJSON("herald-2", []Record{r, ended}, []bool{false, true}, 0)
	f.Add(st)
	st, _ = encodeState("herald-2", []Record{r, ended, r}, []bool{false, true, false}, 0)
	f.Add(st)
	st, _ = encodeState("herald-2", heraldRecords(3), []bool{false, true, false}, 0)
	f.Add(st)
	odd := Record{Session: "s\"é", Node: "n", Incarnation: 1, Trace: "x"}
	st, _ = encodeState("herald-2", []Record{odd, r}, []bool{true, false}, 0)
	f.Add(st)
	f.Add(encodeDisconnect("herald-3", "sess", 7))
	f.Add(encodeQuery("herald-4", 9, query{session: "sess"}))
	f.Add(encodeQuery("herald-4", 10, query{topic: "t"}))
	f.Add(encodeAnswer("herald-5", 9, []Record{r, ended}))
	f.Add([]byte{wireVersion, msgQuery, '{', '}'})
	f.Add([]byte{wireVersion, msgState, '{', '}'})
	f.Add([]byte{wireVersion, msgRecord, 'n', 'u', 'l', 'l'})
	f.Add([]byte{0xff})
	dg, _ := encodeDigest("herald-6", []Record{r, ended}, 0)
	f.Add(dg)
	var sums [summaryBuckets]uint64
	for i := range sums {
		sums[i] = uint64(i) * 0x9e3779b97f4a7c15
	}
	f.Add(encodeSummary("herald-7", []string{"herald-1", "herald-2"}, [][summaryBuckets]uint64{sums, {}}))
	f.Add(encodeSummary("herald-7", nil, nil))
	var mask bucketMask
	mask.set(bucketOf(sessionHash(r.Session)))
	mask.set(summaryBuckets - 1)
	f.Add(encodeDigestReq("herald-8", mask))
	bd := newDigestBuilder("herald-9", 2)
	bd.add(sessionHash(r.Session), r.Node, r.Incarnation, false, 0)
	bd.add(sessionHash(r.Session)+1, "herald-3", 7, true, 0)
	f.Add(bd.encodeBuckets("herald-9", mask))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := decodeMessage(b)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error does not wrap ErrMalformed: %v", err)
			}
			return
		}
		var again []byte
		switch m.kind {
		case msgRecord:
			again, _ = encodeRecordMsg(m.from, m.rec, m.partial, 0)
		case msgState:
			again, _ = encodeStateJSON(m.from, m.recs, m.parts, 0)
		case msgBatch:
			recs, parts := m.all()
			again, _ = encodeState(m.from, recs, parts, 0)
		case msgDisconnect:
			again = encodeDisconnect(m.from, m.session, m.inc)
		case msgQuery:
			again = encodeQuery(m.from, m.qid, query{session: m.session, topic: m.topic})
		case msgAnswer:
			again, _ = encodeRecords(msgAnswer, m.from, m.qid, m.recs, m.parts, 0)
		case msgDigest:
			again = reencodeDigest(m.dig)
		case msgBucketDigest:
			d := reencodeDigest(m.dig)
			again = append(append([]byte{wireVersion, msgBucketDigest}, m.mask[:]...), d[2:]...)
		case msgDigestReq:
			again = encodeDigestReq(m.from, m.mask)
		case msgSummary:
			sums := make([][summaryBuckets]uint64, len(m.sum.peers))
			for i := range sums {
				for j := range sums[i] {
					sums[i][j] = binary.BigEndian.Uint64(m.sum.sums[(i*summaryBuckets+j)*8:])
				}
			}
			again = encodeSummary(m.from, m.sum.peers, sums)
		}
		m2, err := decodeMessage(again)
		if err != nil {
			t.Fatalf("re-encoded message rejected: %v", err)
		}
		if m.kind == msgBatch { // the same records may be encoded differently
			r1, p1 := m.all()
			r2, p2 := m2.all()
			m.recs, m.parts, m2.recs, m2.parts = r1, p1, r2, p2
			m.batch, m.nbatch, m2.batch, m2.nbatch = nil, 0, nil, 0
		}
		if !reflect.DeepEqual(m, m2) {
			t.Fatalf("round trip changed the message:\n%+v\n%+v", m, m2)
		}
	})
}

// heraldRecords returns n records as Herald makes them: 16-hex session ids,
// one owner and region, one topic, a W3C traceparent.
func heraldRecords(n int) []Record {
	recs := make([]Record, n)
	for i := range recs {
		recs[i] = Record{Session: fmt.Sprintf("%016x", uint64(i+1)*0x9e3779b97f4a7c15), Node: "herald-0", Region: "eu-west-1",
			Incarnation: 1732240000123456789 + uint64(i), Topics: []string{"load-0"}, Since: time.Unix(0, 1732240000123456789+int64(i)),
			Trace: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}
	}
	recs[n/2].Ended, recs[n/2].EndedAt = true, time.Unix(0, 1732240009000000000)
	return recs
}

// TestForwardedBatchIsCompact pins what a forwarded batch costs (ADR 0030,
// amended): a home receives every record of a connect burst this way, and
// the bytes are copied several times inside memberlist (encryption,
// framing, reading) before they are decoded, so both the size per record
// and the decoder's allocations per record bound the garbage a home makes.
func TestForwardedBatchIsCompact(t *testing.T) {
	const n = 1000
	recs := heraldRecords(n)
	parts := make([]bool, n)
	parts[7] = true
	msg, left := encodeState("herald-1", recs, parts, batchBudget)
	if left != 0 {
		t.Errorf("%d of %d records left out of one batch", left, n)
	}
	if per := len(msg) / (n - left); per > 64 {
		t.Errorf("forwarded batch: %d bytes per record, want at most 64", per)
	}
	m, err := decodeMessage(msg)
	got, gotParts := m.all()
	if err != nil || m.from != "herald-1" || !reflect.DeepEqual(got, recs[:n-left]) || !reflect.DeepEqual(gotParts, parts[:n-left]) {
		t.Fatalf("decode: %v (from %q, %d records)", err, m.from, len(got))
	}
	allocs := testing.AllocsPerRun(5, func() {
		m, _ := decodeMessage(msg)
		m.each(func(Record, bool) {})
	})
	t.Logf("%d bytes, %.2f allocations per record", len(msg)/(n-left), allocs/float64(n-left))
	if per := allocs / float64(n-left); per > 2.5 {
		t.Errorf("decoding a forwarded batch: %.1f allocations per record, want at most 2.5 (session id and trace)", per)
	}
}

// all returns the records a message carries and their partial flags.
func (m *message) all() ([]Record, []bool) {
	var recs []Record
	var parts []bool
	m.each(func(r Record, p bool) {
		recs = append(recs, r)
		parts = append(parts, p)
	})
	return recs, parts
}
