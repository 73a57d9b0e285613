package resilience

import (
	"testing"
	"time"
)

// waitSlots waits, bounded, until the monitor has closed n more slots.
func waitSlots(t *testing.T, m *schedMonitor, n int) {
	t.Helper()
	m.mu.Lock()
	want := m.n + n
	m.mu.Unlock()
	deadline := time.Now().Add(30 * time.Second)
	for {
		m.mu.Lock()
		got := m.n
		m.mu.Unlock()
		if got >= want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("monitor closed %d of %d slots in 30s", got-want+n, n)
		}
		time.Sleep(schedSampleEvery / 4)
	}
}

// An idle node does not run the 10ms probe: with no dependency call in
// flight the monitor wakes once per slot (to read the runtime's histogram,
// which admission uses), not ten times (issue 20 item 4: the probe cost an
// idle node 8–11 ms of CPU per second).
func TestSchedMonitorIdleWakesOncePerSlot(t *testing.T) {
	m := newSchedMonitor()
	defer m.close()
	waitSlots(t, m, 1)
	w0 := m.wakes.Load()
	waitSlots(t, m, 5)
	// A timer that fires late can only make fewer wake-ups; one spare for
	// the slot being closed while we read.
	if w := m.wakes.Load() - w0; w > 5+1 {
		t.Fatalf("idle monitor woke %d times over 5 slots, want at most 6 (no 10ms probe while idle)", w)
	}
}

// While a dependency call is in flight the probe is due within
// schedProbeEvery, from the call's start on (so a call that ends before
// the monitor gets to run is still excused by the pending lateness), and
// the monitor returns to its slot period once no call is in flight.
func TestSchedMonitorProbesWhileCallsInFlight(t *testing.T) {
	m := newSchedMonitor()
	defer m.close()
	waitSlots(t, m, 1)
	start := time.Now()
	m.begin()
	if due := time.Unix(0, m.deadline.Load()); due.After(start.Add(schedProbeEvery + time.Millisecond)) {
		t.Fatalf("a call in flight: probe due %v after its start, want within %v", due.Sub(start), schedProbeEvery)
	}
	w0 := m.wakes.Load()
	waitSlots(t, m, 3)
	if w := m.wakes.Load() - w0; w <= 3+1 {
		t.Fatalf("a call in flight: monitor woke %d times over 3 slots, want the probe's more", w)
	}
	m.end()
	waitSlots(t, m, 2) // the probe notices no call is in flight
	w0 = m.wakes.Load()
	waitSlots(t, m, 5)
	if w := m.wakes.Load() - w0; w > 5+1 {
		t.Fatalf("calls ended: monitor woke %d times over 5 slots, want at most 6", w)
	}
}
