package resilience

import (
	"math"
	"runtime/metrics"
	"sync"
	"sync/atomic"
	"time"
)

// A dependency call that takes long is not always the dependency's fault:
// on a CPU-starved node the goroutine that made the call waits in the run
// queue after the reply has arrived, and the call looks slow. Counting such
// calls in the slow-call rule opens the breaker of a healthy Redis — the
// node then refuses streams as "store unavailable" when it is really
// overloaded. The sched monitor measures the process's own scheduling
// delay (the runtime's /sched/latencies:seconds histogram: how long
// runnable goroutines waited for a CPU) so that:
//   - Breaker.Do records a call's duration minus the delay the caller's
//     goroutine could have spent waiting to run (excusedWakeups × the p99
//     scheduling delay over the call's span) as its response time; a call
//     that is slow only because of its own node is not a slow call;
//   - Admit sheds new streams (reason "starved") while the runtime's p99
//     scheduling delay over the last second is above
//     AdmissionConfig.MaxSchedDelay, so an overloaded node sheds load
//     itself.
//
// Two measures, both kept per slot of about 100ms by one monitor goroutine
// owned by the Guards: the runtime's histogram (p99 and longest wait of the
// goroutines the runtime sampled — it tracks one transition in eight) and a
// probe: the monitor's own lateness waking from a timer, which is what a
// goroutine woken by the network poller meets. While the probe is overdue
// (starved right now) its pending lateness counts too, so a call that ends
// before the probe gets to run is still excused.
//
// The probe only serves the excuse of dependency calls, so it runs at its
// 10ms period only while one is in flight (Breaker.Do brackets its call
// with begin and end); otherwise the monitor wakes once per slot, for the
// histogram admission reads. An idle node, or one busy only with streams
// that connect from the hub's heads, then wakes 10 times a second, not 100
// (issue 20 item 4: the probe alone cost an idle node 8–11 ms of CPU a
// second). A call that starts while the monitor sleeps brings the probe's
// deadline forward to its start plus 10ms and wakes the monitor, so its
// pending lateness counts from then on.

const (
	schedMetric      = "/sched/latencies:seconds"
	schedProbeEvery  = 10 * time.Millisecond
	schedSampleEvery = 100 * time.Millisecond
	schedRing        = 64 // slots kept: 6.4 s at one per 100 ms
	// excusedWakeups is how many scheduling waits a dependency call is
	// assumed to contain: one to run after the connection pool hands it a
	// connection or its write completes, one to run after the reply wakes
	// it from the network poller.
	excusedWakeups = 2
)

type schedSample struct {
	at   time.Time
	p99  time.Duration // p99 scheduling delay of the wake-ups since the previous sample
	max  time.Duration // the longest of them (upper bound of its bucket)
	late time.Duration // the probe's largest lateness in the slot
}

type schedMonitor struct {
	sample []metrics.Sample // owned by run
	prev   []uint64         // cumulative counts at the previous sample; owned by run

	deadline atomic.Int64  // unix ns at which the probe is due to run
	slotLate atomic.Int64  // the probe's largest lateness in the open slot, ns
	inflight atomic.Int64  // dependency calls in flight (begin/end)
	kick     chan struct{} // cap 1: a first call began, probe at the 10ms period

	mu   sync.Mutex // guards ring, n
	ring [schedRing]schedSample
	n    int // slots written (ring index = n % schedRing)

	stop chan struct{}
	done chan struct{}

	wakes atomic.Int64 // times the monitor goroutine woke (tests)
}

// begin marks a dependency call in flight: the probe is due within
// schedProbeEvery of now, and runs at that period until no call is in
// flight.
func (m *schedMonitor) begin() {
	if m.inflight.Add(1) != 1 {
		return
	}
	m.dueBy(time.Now().Add(schedProbeEvery).UnixNano())
	select {
	case m.kick <- struct{}{}:
	default:
	}
}

// end marks a dependency call done (after begin).
func (m *schedMonitor) end() { m.inflight.Add(-1) }

// dueBy brings the probe's deadline forward to at, if it is later.
func (m *schedMonitor) dueBy(at int64) {
	for {
		d := m.deadline.Load()
		if d <= at || m.deadline.CompareAndSwap(d, at) {
			return
		}
	}
}

// newSchedMonitor starts the monitor goroutine; close stops it.
func newSchedMonitor() *schedMonitor {
	m := &schedMonitor{sample: []metrics.Sample{{Name: schedMetric}}, kick: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	metrics.Read(m.sample)
	if m.sample[0].Value.Kind() == metrics.KindFloat64Histogram {
		m.prev = append([]uint64(nil), m.sample[0].Value.Float64Histogram().Counts...)
	}
	m.deadline.Store(time.Now().Add(schedProbeEvery).UnixNano())
	go m.run()
	return m
}

func (m *schedMonitor) close() {
	close(m.stop)
	<-m.done
}

func (m *schedMonitor) run() {
	defer close(m.done)
	t := time.NewTimer(schedProbeEvery)
	defer t.Stop()
	slotStart := time.Now()
	for {
		select {
		case <-m.stop:
			return
		case <-t.C:
		case <-m.kick:
		}
		m.wakes.Add(1)
		now := time.Now()
		if late := now.UnixNano() - m.deadline.Load(); late > m.slotLate.Load() {
			m.slotLate.Store(late)
		}
		if now.Sub(slotStart) >= schedSampleEvery {
			m.closeSlot(now)
			slotStart = now
		}
		// The probe's period while a call is in flight; else the end of
		// the slot. A call that begins after the check brings the
		// deadline forward itself (begin), after this Store: the order of
		// the two atomics leaves no window without a due probe.
		next := schedProbeEvery
		if m.inflight.Load() == 0 {
			next = max(slotStart.Add(schedSampleEvery).Sub(now), schedProbeEvery)
		}
		now = time.Now()
		m.deadline.Store(now.Add(next).UnixNano())
		if next > schedProbeEvery && m.inflight.Load() > 0 {
			m.dueBy(now.Add(schedProbeEvery).UnixNano())
			next = schedProbeEvery
		}
		t.Reset(next)
	}
}

// closeSlot reads the runtime histogram and appends the slot to the ring.
func (m *schedMonitor) closeSlot(now time.Time) {
	smp := schedSample{at: now, late: time.Duration(m.slotLate.Swap(0))}
	if m.prev == nil {
		m.push(smp)
		return
	}
	metrics.Read(m.sample)
	h := m.sample[0].Value.Float64Histogram()
	var total uint64
	delta := make([]uint64, len(h.Counts))
	for i, c := range h.Counts {
		delta[i] = c - m.prev[i]
		total += delta[i]
	}
	copy(m.prev, h.Counts)
	upper := func(i int) time.Duration {
		hi := h.Buckets[i+1]
		if math.IsInf(hi, 1) {
			hi = h.Buckets[i]
		}
		return time.Duration(hi * float64(time.Second))
	}
	if total > 0 {
		want := uint64(math.Ceil(float64(total) * 0.99))
		var cum uint64
		for i, c := range delta {
			cum += c
			if cum >= want && smp.p99 == 0 {
				smp.p99 = upper(i)
			}
			if c > 0 {
				smp.max = upper(i)
			}
		}
	}
	m.push(smp)
}

func (m *schedMonitor) push(s schedSample) {
	m.mu.Lock()
	m.ring[m.n%schedRing] = s
	m.n++
	m.mu.Unlock()
}

// pending is the probe's lateness now: how long it has been runnable
// without running (0 when it is not overdue), or the open slot's worst.
func (m *schedMonitor) pending(now time.Time) time.Duration {
	late := max(now.UnixNano()-m.deadline.Load(), m.slotLate.Load())
	return time.Duration(max(late, 0))
}

// over returns the largest p99 and the longest scheduling delay among the
// slots covering [from, to], the probe's lateness included (also its
// pending lateness at to).
func (m *schedMonitor) over(from, to time.Time) (p99, longest time.Duration) {
	longest = m.pending(to)
	p99 = longest
	m.mu.Lock()
	defer m.mu.Unlock()
	for k := 0; k < min(m.n, schedRing); k++ {
		s := m.ring[(m.n-1-k)%schedRing]
		if s.at.Before(from) {
			break
		}
		p99 = max(p99, s.p99, s.late)
		longest = max(longest, s.max, s.late)
	}
	return p99, longest
}

// recent returns the runtime's p99 scheduling delay over the last second
// (the probe's lateness, a maximum of a few samples, is left out: admission
// sheds on a sustained delay, not on one late wake-up).
func (m *schedMonitor) recent(now time.Time) time.Duration {
	from := now.Add(-time.Second)
	m.mu.Lock()
	defer m.mu.Unlock()
	var p99 time.Duration
	for k := 0; k < min(m.n, schedRing); k++ {
		s := m.ring[(m.n-1-k)%schedRing]
		if s.at.Before(from) {
			break
		}
		p99 = max(p99, s.p99)
	}
	return p99
}

// excuse returns how much of a call's duration the caller's own scheduling
// delay may account for: excusedWakeups waits as long as the longest any
// goroutine of this process waited for a CPU during the call. On a process
// that is not starved that is microseconds, so a slow dependency is still
// seen as slow.
func (m *schedMonitor) excuse(start, end time.Time) time.Duration {
	_, longest := m.over(start, end)
	return excusedWakeups * longest
}
