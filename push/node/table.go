package node

import (
	"sync"
	"time"

	"github.com/heraldpush/herald/push/stream"
)

// table tracks this node's live streams by session id.
type table struct {
	mu   sync.Mutex
	next uint64 // local incarnations when there is no cluster
	by   map[string]*stream.Handle
	// ended remembers the session-span trace of recently ended streams
	// (bounded, oldest forgotten first) so that a reconnect to this node
	// links to its previous connection even without a cluster.
	ended      map[string]string
	endedOrder []string
}

// maxEndedTraces bounds table.ended.
const maxEndedTraces = 10000

func newTable() *table {
	return &table{by: make(map[string]*stream.Handle), ended: make(map[string]string)}
}

// endedTrace returns the trace of the session's last stream on this node.
func (t *table) endedTrace(session string) string {
	t.mu.Lock()
	defer t.mu.Unlock()
	if h := t.by[session]; h != nil {
		return h.Trace
	}
	return t.ended[session]
}

// add registers h; an older stream of the same session on this node is
// kicked (same-node takeover). A newer one wins and h is kicked instead.
func (t *table) add(h *stream.Handle) {
	t.mu.Lock()
	old := t.by[h.Session]
	if old != nil && old.Incarnation > h.Incarnation {
		t.mu.Unlock()
		h.Kick.Fire(stream.EndTakeover, 0)
		return
	}
	t.by[h.Session] = h
	t.mu.Unlock()
	if old != nil {
		old.Kick.Fire(stream.EndTakeover, 0)
	}
}

func (t *table) remove(h *stream.Handle) {
	t.mu.Lock()
	if t.by[h.Session] == h {
		delete(t.by, h.Session)
	}
	if h.Trace != "" {
		if _, ok := t.ended[h.Session]; !ok {
			t.endedOrder = append(t.endedOrder, h.Session)
		}
		t.ended[h.Session] = h.Trace
		for len(t.endedOrder) > maxEndedTraces {
			delete(t.ended, t.endedOrder[0])
			t.endedOrder = t.endedOrder[1:]
		}
	}
	t.mu.Unlock()
}

func (t *table) nextIncarnation() uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.next = max(t.next+1, uint64(time.Now().UnixNano()))
	return t.next
}

// revoke kicks the stream of session if its incarnation is at most inc.
func (t *table) revoke(session string, inc uint64, reason string) bool {
	t.mu.Lock()
	h := t.by[session]
	t.mu.Unlock()
	if h == nil || h.Incarnation > inc {
		return false
	}
	return h.Kick.Fire(reason, 0)
}

func (t *table) snapshot() []*stream.Handle {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]*stream.Handle, 0, len(t.by))
	for _, h := range t.by {
		out = append(out, h)
	}
	return out
}
