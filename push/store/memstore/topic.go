package memstore

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/heraldpush/herald/push"
	"github.com/heraldpush/herald/push/store/internal/storeutil"
)

// topic is one stream's state. All fields are guarded by mu (in store.go's
// lock order: shard, topic, watch shard).
type topic struct {
	mu    sync.Mutex
	used  *atomic.Int64 // the store's accounted memory
	name  string
	epoch string // "" until the first append
	last  uint64 // highest offset ever assigned
	ret   push.Retention
	cap   int // min(ret.MaxLen, Config.MaxEvents)

	// evs[head:] are the retained events, offsets contiguous and ascending.
	evs  []push.Event
	head int

	idem      map[string]idemEntry
	idemOrder []idemRef // FIFO by insertion, so by expiry
	idemHead  int
	maxIdem   int
	window    time.Duration
}

type idemEntry struct {
	res     push.AppendResult
	expires time.Time
}

type idemRef struct {
	key     string
	expires time.Time
}

// Memory accounting: fixed overheads approximate the Go structures.
const (
	topicOverhead = 512
	eventOverhead = 160
)

func eventCost(e *push.Event) int64 {
	return eventOverhead + int64(len(e.Data)+len(e.Type)+len(e.TraceParent))
}

func newTopic(name string, cfg Config, used *atomic.Int64) *topic {
	used.Add(topicOverhead + int64(len(name)))
	ret := cfg.Retention.For(name)
	limit := cfg.MaxEvents
	if ret.MaxLen > 0 && ret.MaxLen < int64(limit) {
		limit = int(ret.MaxLen)
	}
	return &topic{
		used:    used,
		name:    name,
		ret:     ret,
		cap:     limit,
		idem:    map[string]idemEntry{},
		maxIdem: cfg.MaxIdempotencyKeys,
		window:  cfg.IdempotencyWindow,
	}
}

func (t *topic) retained() int { return len(t.evs) - t.head }

// at returns the retained event with offset o, or nil.
func (t *topic) at(o uint64) *push.Event {
	n := t.retained()
	if n == 0 {
		return nil
	}
	first := t.evs[t.head].Offset
	if o < first || o > first+uint64(n)-1 {
		return nil
	}
	return &t.evs[t.head+int(o-first)]
}

func (t *topic) info(origin string) push.StreamInfo {
	in := push.StreamInfo{Topic: t.name, Origin: origin, Epoch: t.epoch, Last: t.last, Length: int64(t.retained())}
	if in.Length > 0 {
		in.First = t.evs[t.head].Offset
	}
	if t.epoch != "" {
		in.EpochStart = 1 // an in-memory stream lives in one epoch
	}
	return in
}

func (t *topic) append(drafts []push.Draft, now time.Time, cfg Config) []push.AppendResult {
	if t.epoch == "" {
		t.epoch = storeutil.NewEpoch()
	}
	t.expireIdem(now)
	res := make([]push.AppendResult, len(drafts))
	for i := range drafts {
		d := &drafts[i]
		if d.IdempotencyKey != "" {
			if e, ok := t.idem[d.IdempotencyKey]; ok {
				res[i] = e.res
				res[i].Duplicate = true
				continue
			}
		}
		t.last++
		data := append([]byte(nil), d.Data...) // the caller may reuse d.Data
		t.evs = append(t.evs, push.Event{
			Topic: t.name, Origin: cfg.Origin, Epoch: t.epoch, Offset: t.last,
			Type: storeutil.TypeOf(d), Data: data, Time: now, TraceParent: d.TraceParent,
		})
		t.used.Add(eventCost(&t.evs[len(t.evs)-1]))
		res[i] = push.AppendResult{Epoch: t.epoch, Offset: t.last, Time: now}
		if d.IdempotencyKey != "" {
			t.rememberIdem(d.IdempotencyKey, res[i], now)
		}
	}
	t.trimLen()
	t.trimAge(now)
	return res
}

// trimLen enforces the length cap.
func (t *topic) trimLen() {
	if over := t.retained() - t.cap; over > 0 {
		t.drop(over)
	}
}

// trimAge drops events older than the retention's MaxAge.
func (t *topic) trimAge(now time.Time) {
	if t.ret.MaxAge <= 0 {
		return
	}
	cutoff := now.Add(-t.ret.MaxAge)
	n := 0
	for t.head+n < len(t.evs) && t.evs[t.head+n].Time.Before(cutoff) {
		n++
	}
	t.drop(n)
}

// drop removes the n oldest retained events and compacts the backing array
// when at least half of it is dead, so memory stays within twice the cap.
func (t *topic) drop(n int) {
	if n <= 0 {
		return
	}
	var freed int64
	for i := t.head; i < t.head+n; i++ {
		freed += eventCost(&t.evs[i])
	}
	t.used.Add(-freed)
	clear(t.evs[t.head : t.head+n]) // release Data for the GC
	t.head += n
	if t.head == len(t.evs) {
		t.evs, t.head = t.evs[:0], 0
		return
	}
	if t.head >= 32 && t.head*2 >= len(t.evs) {
		k := copy(t.evs, t.evs[t.head:])
		clear(t.evs[k:])
		t.evs, t.head = t.evs[:k], 0
	}
}

func (t *topic) rememberIdem(key string, res push.AppendResult, now time.Time) {
	for len(t.idem) >= t.maxIdem && t.idemHead < len(t.idemOrder) {
		t.forgetOldestIdem()
	}
	exp := now.Add(t.window)
	t.idem[key] = idemEntry{res: res, expires: exp}
	t.idemOrder = append(t.idemOrder, idemRef{key: key, expires: exp})
}

func (t *topic) expireIdem(now time.Time) {
	for t.idemHead < len(t.idemOrder) && !t.idemOrder[t.idemHead].expires.After(now) {
		t.forgetOldestIdem()
	}
}

func (t *topic) forgetOldestIdem() {
	ref := t.idemOrder[t.idemHead]
	if e, ok := t.idem[ref.key]; ok && e.expires.Equal(ref.expires) {
		delete(t.idem, ref.key)
	}
	t.idemOrder[t.idemHead] = idemRef{}
	t.idemHead++
	if t.idemHead == len(t.idemOrder) {
		t.idemOrder, t.idemHead = t.idemOrder[:0], 0
	} else if t.idemHead >= 32 && t.idemHead*2 >= len(t.idemOrder) {
		k := copy(t.idemOrder, t.idemOrder[t.idemHead:])
		clear(t.idemOrder[k:])
		t.idemOrder, t.idemHead = t.idemOrder[:k], 0
	}
}
