package memstore

import (
	"context"
	"errors"
	"sync"

	"github.com/heraldpush/herald/push"
)

// listener routes announcements of its watched topics to one sink. It has
// no goroutine: the appending goroutine calls the sink directly.
type listener struct {
	s    *Store
	sink push.Sink

	mu     sync.Mutex
	topics map[string]struct{}
	closed bool
}

var _ push.Listener = (*listener)(nil)

// Listen registers sink. Announcements start with Watch.
func (s *Store) Listen(sink push.Sink) (push.Listener, error) {
	if sink == nil {
		return nil, errors.New("memstore: Listen: nil sink")
	}
	if s.closed.Load() {
		return nil, push.ErrClosed
	}
	l := &listener{s: s, sink: sink, topics: map[string]struct{}{}}
	s.lmu.Lock()
	s.listeners[l] = struct{}{}
	s.lmu.Unlock()
	return l, nil
}

// Watch starts announcing topic. Watching a watched topic is a no-op.
func (l *listener) Watch(ctx context.Context, topic string) error {
	if err := push.ValidateTopic(topic); err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed || l.s.closed.Load() {
		return push.ErrClosed
	}
	if _, ok := l.topics[topic]; ok {
		return nil
	}
	l.topics[topic] = struct{}{}
	ws := &l.s.watch[l.s.shard(topic)]
	ws.mu.Lock()
	set := ws.watchers[topic]
	if set == nil {
		set = map[*listener]struct{}{}
		ws.watchers[topic] = set
	}
	set[l] = struct{}{}
	ws.mu.Unlock()
	return nil
}

// Unwatch stops announcing topic. When it returns, no announcement of topic
// is in progress or will start for this listener.
func (l *listener) Unwatch(topic string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, ok := l.topics[topic]; !ok {
		return
	}
	delete(l.topics, topic)
	l.unregister(topic)
}

func (l *listener) unregister(topic string) {
	ws := &l.s.watch[l.s.shard(topic)]
	ws.mu.Lock()
	if set := ws.watchers[topic]; set != nil {
		delete(set, l)
		if len(set) == 0 {
			delete(ws.watchers, topic)
		}
	}
	ws.mu.Unlock()
}

// Close unwatches everything. It is idempotent; after it returns the sink
// is never called again.
func (l *listener) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	for topic := range l.topics {
		l.unregister(topic)
	}
	clear(l.topics)
	l.mu.Unlock()
	l.s.lmu.Lock()
	delete(l.s.listeners, l)
	l.s.lmu.Unlock()
	return nil
}
