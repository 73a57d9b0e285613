package hub

import (
	"runtime"
	"sync"
)

const (
	// PacedFanOut is the number of subscribers above which one dispatch's
	// wakes are paced by the hub's waker instead of issued at once.
	PacedFanOut = 1024
	// wakeWave is how many subscribers the waker wakes before it yields.
	wakeWave = 256
)

// wakeList collects the subscribers one dispatch enqueued on and must wake.
type wakeList struct{ subs []*Subscriber }

func (l *wakeList) reset() {
	clear(l.subs)
	l.subs = l.subs[:0]
}

// waker wakes the subscribers of big fan-outs in waves, on a goroutine of
// its own.
//
// Waking every subscriber of a big topic at once puts thousands of
// goroutines on the scheduler's run queue; a goroutine the network poller
// readies (the next announcement, a Redis reply, a publish request) joins
// the queue behind all of them, so the publish path stalls for a whole
// fan-out and the next event reaches the hub only after every write of the
// previous one. The waker yields after each wave, letting those goroutines
// in after at most one wave, and dispatch itself only enqueues: the next
// event lands at once in the queues of subscribers not written yet and
// goes out in the same write. Small fan-outs (at most PacedFanOut wakes)
// are woken inline: their flood is short and a hop through the waker would
// only add latency.
type waker struct {
	mu     sync.Mutex
	queue  []*Subscriber // FIFO: queue[head:]
	head   int
	signal chan struct{} // capacity 1: "queue became non-empty"
}

func (w *waker) init() { w.signal = make(chan struct{}, 1) }

// wake wakes l's subscribers, inline or through the waker, and empties l.
// The waker's queue holds each subscriber at most once (enqueue asks for
// one wake per take), so it is bounded by the hub's subscribers.
func (w *waker) wake(l *wakeList) {
	defer l.reset()
	if len(l.subs) <= PacedFanOut {
		for _, s := range l.subs {
			s.Wake()
		}
		return
	}
	w.mu.Lock()
	w.queue = append(w.queue, l.subs...)
	w.mu.Unlock()
	select {
	case w.signal <- struct{}{}:
	default:
	}
}

// run wakes queued subscribers until stop is closed.
func (w *waker) run(stop <-chan struct{}) {
	var wave []*Subscriber
	for {
		select {
		case <-stop:
			return
		case <-w.signal:
		}
		for {
			wave = w.pop(wave[:0])
			if len(wave) == 0 {
				break
			}
			for _, s := range wave {
				s.Wake()
			}
			clear(wave)
			runtime.Gosched()
		}
	}
}

// pop moves up to wakeWave queued subscribers to dst.
func (w *waker) pop(dst []*Subscriber) []*Subscriber {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := min(wakeWave, len(w.queue)-w.head)
	dst = append(dst, w.queue[w.head:w.head+n]...)
	clear(w.queue[w.head : w.head+n])
	w.head += n
	if w.head == len(w.queue) {
		w.queue, w.head = w.queue[:0], 0
	}
	return dst
}
