package resilience

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/alibaba/sentinel-golang/core/system_metric"
)

func TestAdmissionMaxStreams(t *testing.T) {
	var ev events
	g := mustNew(t, Config{Admission: AdmissionConfig{MaxStreams: 3, BusyRetryAfter: 2 * time.Second}}, Options{OnEvent: ev.record})
	var open []Stream
	for i := range 3 {
		s, blk := g.Admit(fmt.Sprintf("10.0.0.%d", i))
		if blk != nil {
			t.Fatalf("stream %d refused: %v", i, blk)
		}
		open = append(open, s)
	}
	_, blk := g.Admit("10.0.0.9")
	if blk == nil || blk.Layer != LayerAdmission || blk.Resource != ResourceConnect || blk.Reason != ReasonStreams || blk.RetryAfter != 2*time.Second {
		t.Fatalf("4th stream: %+v, want blocked streams with RetryAfter 2s", blk)
	}
	if g.Streams() != 3 {
		t.Fatalf("Streams() = %d, want 3", g.Streams())
	}
	open[0].Done()
	open[0].Done() // idempotent: frees one slot, not two
	if g.Streams() != 2 {
		t.Fatalf("after Done twice: Streams() = %d, want 2", g.Streams())
	}
	s, blk := g.Admit("10.0.0.9")
	if blk != nil {
		t.Fatalf("after Done: %v", blk)
	}
	if _, blk := g.Admit("10.0.0.10"); blk == nil || blk.Reason != ReasonStreams {
		t.Fatalf("cap must hold again after the freed slot was taken, got %v", blk)
	}
	for _, s := range append(open[1:], s) {
		s.Live()
		s.Done()
	}
	if g.Streams() != 0 {
		t.Fatalf("Streams() = %d after all Done", g.Streams())
	}
	if got := g.Counters()["admission/connect/streams/block"]; got != 2 {
		t.Errorf("streams blocks = %d, want 2", got)
	}
	if got := ev.count(LayerAdmission, ReasonStreams, KindBlock); got != 2 {
		t.Errorf("streams block events = %d, want 2", got)
	}
	Stream{}.Done() // the zero Stream is inert
	Stream{}.Live()
}

func TestAdmissionPerIP(t *testing.T) {
	g := mustNew(t, Config{Admission: AdmissionConfig{MaxStreamsPerIP: 2}}, Options{})
	a1, _ := g.Admit("192.0.2.1")
	a2, _ := g.Admit("192.0.2.1")
	if _, blk := g.Admit("192.0.2.1"); blk == nil || blk.Reason != ReasonPerIP {
		t.Fatalf("3rd stream from one IP: %v, want per_ip", blk)
	}
	b1, blk := g.Admit("192.0.2.2")
	if blk != nil {
		t.Fatalf("other IP refused: %v", blk)
	}
	if g.Streams() != 3 {
		t.Fatalf("Streams() = %d, want 3 (the refused one must not count)", g.Streams())
	}
	a1.Done()
	a3, blk := g.Admit("192.0.2.1")
	if blk != nil {
		t.Fatalf("after Done: %v", blk)
	}
	for _, s := range []Stream{a2, a3, b1} {
		s.Done()
	}
	if n := g.perIP.count("192.0.2.1"); n != 0 {
		t.Errorf("per-IP count %d after all Done", n)
	}
	if got := g.Counters()["admission/connect/per_ip/block"]; got != 1 {
		t.Errorf("per_ip blocks = %d, want 1", got)
	}
}

// A fresh node admits at about ConnectRate/ColdFactor and ramps to
// ConnectRate over the warm-up. Counts over one-second windows, loose bounds.
func TestAdmissionConnectRateWarmUp(t *testing.T) {
	if testing.Short() {
		t.Skip("runs 5 s")
	}
	const rate = 100 // cold: 100/3 ≈ 33/s, ramping to 100/s within ≈ 3–4 s
	g := mustNew(t, Config{Admission: AdmissionConfig{ConnectRate: rate, WarmUp: 2 * time.Second, ColdFactor: 3}}, Options{})

	// Sentinel's warm-up recomputes the allowed rate at each wall-clock
	// second and its window has two 500 ms buckets: align with them, or a
	// measured second straddles two allowed rates. Four clients retrying
	// every 2 ms keep the limiter saturated even on a loaded machine.
	const seconds = 5
	time.Sleep(time.Until(time.Now().Truncate(time.Second).Add(time.Second)))
	start := time.Now()
	var (
		passes     [seconds]atomic.Int64
		rateBlocks atomic.Int64
		badBlock   atomic.Pointer[Blocked]
		wg         sync.WaitGroup
	)
	for range 4 {
		wg.Go(func() {
			for {
				sec := int(time.Since(start) / time.Second)
				if sec >= seconds {
					return
				}
				s, blk := g.Admit("198.51.100.1")
				if blk != nil {
					rateBlocks.Add(1)
					if blk.Reason != ReasonRate || blk.RetryAfter <= 0 || blk.RetryAfter > time.Second {
						badBlock.Store(blk)
					}
				} else {
					passes[sec].Add(1)
					s.Live()
					s.Done()
				}
				time.Sleep(2 * time.Millisecond)
			}
		})
	}
	wg.Wait()
	var windows []int
	for i := range passes {
		windows = append(windows, int(passes[i].Load()))
	}
	t.Logf("admitted per second: %v (%d rate blocks)", windows, rateBlocks.Load())
	if b := badBlock.Load(); b != nil {
		t.Fatalf("unexpected block %+v", *b)
	}
	first, last := windows[0], windows[len(windows)-1]
	if first > rate/2 {
		t.Errorf("first second admitted %d, want ≈ rate/cold_factor (≤ %d)", first, rate/2)
	}
	if last < rate*7/10 || last > rate*13/10 {
		t.Errorf("fifth second admitted %d, want ≈ %d", last, rate)
	}
	if last < first*3/2 || first == 0 {
		t.Errorf("no ramp: first %d, last %d", first, last)
	}
	if got := g.Counters()["admission/connect/rate/block"]; got != uint64(rateBlocks.Load()) || got == 0 {
		t.Errorf("rate blocks counter %d, want %d > 0", got, rateBlocks.Load())
	}
}

// The system layer with sentinel's test hooks. Sentinel's CPU and load
// collectors run (MaxCPU/MaxLoad > 0 starts them) and overwrite the hooked
// value every second, so each blocked expectation re-applies the hook and
// retries. Thresholds are far above what this machine can reach, so the
// real values never trip it.
func TestAdmissionSystem(t *testing.T) {
	const (
		maxCPU  = 10000 // 100 cores
		maxLoad = 1000
	)
	t.Cleanup(func() { system_metric.SetSystemCpuUsage(0); system_metric.SetSystemLoad(0) })
	var ev events
	g := mustNew(t, Config{Admission: AdmissionConfig{MaxCPU: maxCPU, MaxLoad: maxLoad}}, Options{OnEvent: ev.record})

	admitUnder := func(cpu, load float64) (Stream, *Blocked) {
		system_metric.SetSystemCpuUsage(cpu)
		system_metric.SetSystemLoad(load)
		return g.Admit("203.0.113.1")
	}
	expectBlocked := func(cpu, load float64) {
		t.Helper()
		checkFor(t, 5*time.Second, 10*time.Millisecond, func() error {
			s, blk := admitUnder(cpu, load)
			if blk == nil {
				s.Done()
				return fmt.Errorf("admitted under cpu=%v load=%v", cpu, load)
			}
			if blk.Reason != ReasonSystem {
				return fmt.Errorf("blocked for %s, want system", blk.Reason)
			}
			return nil
		})
	}

	// BBR: over the CPU threshold, handshakes are refused only while they
	// back up (more than one in flight with no completions measured).
	h1, blk := admitUnder(1e6, 0)
	if blk != nil {
		t.Fatalf("first handshake under high CPU, none in flight: %v", blk)
	}
	h2, blk := admitUnder(1e6, 0)
	if blk != nil {
		t.Fatalf("second handshake under high CPU, one in flight: %v", blk)
	}
	expectBlocked(1e6, 0)
	expectBlocked(0, 1e6) // load trips the same way
	h1.Live()
	h2.Live() // handshakes done: nothing backs up any more
	s, blk := admitUnder(1e6, 0)
	if blk != nil {
		t.Fatalf("high CPU but no handshake in flight: %v", blk)
	}
	s.Done()
	h1.Done()
	h2.Done()

	// Strict: any handshake is refused while over the threshold.
	cfg := Config{Admission: AdmissionConfig{MaxCPU: maxCPU, MaxLoad: maxLoad, StrictSystem: true}}
	if err := g.Reload(cfg); err != nil {
		t.Fatal(err)
	}
	expectBlocked(1e6, 0)

	// Recovery: back under the threshold.
	s, blk = admitUnder(0, 0)
	if blk != nil {
		t.Fatalf("after recovery: %v", blk)
	}
	s.Done()
	if g.Streams() != 0 {
		t.Errorf("Streams() = %d", g.Streams())
	}
	if got := g.Counters()["admission/connect/system/block"]; got < 3 {
		t.Errorf("system blocks = %d, want ≥ 3", got)
	}
}

// Concurrent Admit/Done never lets the caps slip and never leaks a slot.
func TestAdmissionConcurrent(t *testing.T) {
	const maxStreams, perIP = 50, 5
	g := mustNew(t, Config{Admission: AdmissionConfig{MaxStreams: maxStreams, MaxStreamsPerIP: perIP}}, Options{})
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		peak     int
		perIPBad error
	)
	for w := range 16 {
		wg.Go(func() {
			ip := fmt.Sprintf("ip-%d", w%4)
			for range 300 {
				s, blk := g.Admit(ip)
				if blk != nil {
					continue
				}
				n := g.Streams()
				c := g.perIP.count(ip)
				mu.Lock()
				peak = max(peak, n)
				if c > perIP {
					perIPBad = fmt.Errorf("%s has %d streams", ip, c)
				}
				mu.Unlock()
				s.Done()
			}
		})
	}
	wg.Wait()
	if peak > maxStreams || perIPBad != nil {
		t.Errorf("peak %d streams (cap %d), %v", peak, maxStreams, perIPBad)
	}
	if g.Streams() != 0 {
		t.Errorf("Streams() = %d after all Done", g.Streams())
	}
}
