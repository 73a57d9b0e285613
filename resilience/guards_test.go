package resilience

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/alibaba/sentinel-golang/core/circuitbreaker"
	"github.com/alibaba/sentinel-golang/core/flow"
	"github.com/alibaba/sentinel-golang/core/hotspot"
)

func isolationConfig() Config {
	cfg := errorBreakerConfig()
	cfg.Ingress.PublishQPS = 2
	cfg.Admission.MaxStreams = 1
	cfg.Admission.ConnectRate = 1000
	return cfg
}

// ruleCounts returns how many sentinel rules g's resources carry.
func ruleCounts(g *Guards) (ingress, admission, breaker int) {
	ingress = len(hotspot.GetRulesOfResource(g.resPublish))
	admission = len(flow.GetRulesOfResource(g.resHandshake))
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, b := range g.breakers {
		breaker += len(circuitbreaker.GetRulesOfResource(b.res))
	}
	return
}

// Two Guards with the same resources in one process share nothing, and
// closing one leaves the other — including its breaker listener — intact.
func TestGuardsIsolated(t *testing.T) {
	var evA, evB events
	a := mustNew(t, isolationConfig(), Options{Name: "node-a", OnEvent: evA.record})
	b := mustNew(t, isolationConfig(), Options{Name: "node-b", OnEvent: evB.record})
	if a.ns == b.ns {
		t.Fatalf("same namespace %q", a.ns)
	}

	// Layer 1: a's tenant exhausted, b's same tenant untouched.
	for i := range 3 {
		p, blk := a.Publish("t", "x")
		if (blk != nil) != (i == 2) {
			t.Fatalf("a publish %d: %v", i, blk)
		}
		p.Done(nil)
	}
	for i := range 2 {
		p, blk := b.Publish("t", "x")
		if blk != nil {
			t.Fatalf("b publish %d blocked by a's traffic: %v", i, blk)
		}
		p.Done(nil)
	}
	// Layer 2: a full, b empty.
	sa, _ := a.Admit("ip")
	if _, blk := a.Admit("ip"); blk == nil {
		t.Fatal("a admitted beyond MaxStreams")
	}
	sb, blk := b.Admit("ip")
	if blk != nil {
		t.Fatalf("b refused because of a: %v", blk)
	}
	sa.Done()
	sb.Done()
	// Layer 4: a's primary open, b's primary closed.
	tripErrors(t, a.Breaker("primary"))
	if st := b.Breaker("primary").State(); st != StateClosed {
		t.Fatalf("b's breaker %s after a's tripped", st)
	}
	if err := b.Breaker("primary").Do(t.Context(), "XADD", succeeding); err != nil {
		t.Fatalf("b's breaker: %v", err)
	}
	if got := evB.kinds(LayerDependency); len(got) != 0 {
		t.Fatalf("b saw a's transitions: %v", got)
	}

	// Close a: none of its rules remain, b's are untouched.
	if i, ad, br := ruleCounts(a); i != 1 || ad != 1 || br != 1 {
		t.Fatalf("a's rules before Close: ingress %d admission %d breaker %d", i, ad, br)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if err := a.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if i, ad, br := ruleCounts(a); i+ad+br != 0 {
		t.Fatalf("a's rules after Close: ingress %d admission %d breaker %d", i, ad, br)
	}
	if i, ad, br := ruleCounts(b); i != 1 || ad != 1 || br != 1 {
		t.Fatalf("b's rules after a's Close: ingress %d admission %d breaker %d", i, ad, br)
	}
	for _, r := range slices.Concat(
		hotspotResources(), flowResources(), breakerResources(),
	) {
		if strings.HasPrefix(r, a.ns+"/") {
			t.Errorf("sentinel still has a rule for %s", r)
		}
	}

	// b's breaker still reports through the shared listener.
	tripErrors(t, b.Breaker("primary"))
	if got := evB.kinds(LayerDependency); !slices.Equal(got, []string{"error_ratio/trip"}) {
		t.Fatalf("b transitions after a closed: %v", got)
	}

	// After Close a is unguarded and refuses Reload.
	for range 10 {
		p, blk := a.Publish("t", "x")
		if blk != nil {
			t.Fatalf("closed Guards still limits: %v", blk)
		}
		p.Done(nil)
	}
	if err := a.Breaker("primary").Do(t.Context(), "XADD", succeeding); err != nil {
		t.Fatalf("closed Guards' breaker: %v", err)
	}
	if err := a.Reload(isolationConfig()); !errors.Is(err, ErrClosed) {
		t.Fatalf("Reload after Close: %v", err)
	}
}

func hotspotResources() (out []string) {
	for _, r := range hotspot.GetRules() {
		out = append(out, r.Resource)
	}
	return
}

func flowResources() (out []string) {
	for _, r := range flow.GetRules() {
		out = append(out, r.Resource)
	}
	return
}

func breakerResources() (out []string) {
	for _, r := range circuitbreaker.GetRules() {
		out = append(out, r.Resource)
	}
	return
}

// Reload changes limits of a running Guards; an invalid config changes
// nothing.
func TestReload(t *testing.T) {
	cfg := isolationConfig()
	g := mustNew(t, cfg, Options{})

	s1, _ := g.Admit("ip")
	if _, blk := g.Admit("ip"); blk == nil || blk.Reason != ReasonStreams {
		t.Fatalf("MaxStreams 1: %v", blk)
	}
	cfg.Admission.MaxStreams = 2
	if err := g.Reload(cfg); err != nil {
		t.Fatal(err)
	}
	s2, blk := g.Admit("ip")
	if blk != nil {
		t.Fatalf("after raising MaxStreams: %v", blk)
	}

	bad := cfg
	bad.Ingress.PublishQPS = -1
	err := g.Reload(bad)
	if err == nil || !strings.Contains(err.Error(), "ingress.publish_qps -1") {
		t.Fatalf("invalid reload: %v", err)
	}
	if _, blk := g.Admit("ip"); blk == nil {
		t.Fatal("invalid reload changed MaxStreams")
	}
	s1.Done()
	s2.Done()

	// Ingress: 2/s, then 1000/s. The bucket emptied under the old rule
	// refills at the next period (statistics are kept), then the new rate
	// applies.
	for range 3 {
		if p, blk := g.Publish("t", "x"); blk == nil {
			p.Done(nil)
		}
	}
	cfg.Ingress.PublishQPS = 1000
	if err := g.Reload(cfg); err != nil {
		t.Fatal(err)
	}
	if r := hotspot.GetRulesOfResource(g.resPublish); len(r) != 1 || r[0].Threshold != 1000 {
		t.Fatalf("hotspot rules after reload: %+v", r)
	}
	checkFor(t, 3*time.Second, 50*time.Millisecond, func() error {
		p, blk := g.Publish("t", "x")
		if blk != nil {
			return blk
		}
		p.Done(nil)
		return nil
	})
	for i := range 100 {
		p, blk := g.Publish("t", "x")
		if blk != nil {
			t.Fatalf("publish %d at the reloaded rate: %v", i, blk)
		}
		p.Done(nil)
	}

	// Breaker: an unchanged rule keeps its state, a changed one restarts
	// closed.
	br := g.Breaker("primary")
	tripErrors(t, br)
	if err := g.Reload(cfg); err != nil {
		t.Fatal(err)
	}
	if br.State() != StateOpen || !errors.Is(br.Do(t.Context(), "XADD", succeeding), ErrBlocked) {
		t.Fatalf("reload with the same rule: %s, want still open", br.State())
	}
	cfg.Breaker.ErrorRatio = 0.9
	if err := g.Reload(cfg); err != nil {
		t.Fatal(err)
	}
	if br.State() != StateClosed || br.Do(t.Context(), "XADD", succeeding) != nil {
		t.Fatalf("reload with a new rule: %s, want closed", br.State())
	}
	if r := circuitbreaker.GetRulesOfResource(br.res); len(r) != 1 || r[0].Threshold != 0.9 {
		t.Fatalf("breaker rules after reload: %+v", r)
	}
	cfg.Breaker.ProbeNum = 2 // sentinel ignores ProbeNum when comparing rules
	if err := g.Reload(cfg); err != nil {
		t.Fatal(err)
	}
	if r := circuitbreaker.GetRulesOfResource(br.res); len(r) != 1 || r[0].ProbeNum != 2 {
		t.Fatalf("ProbeNum not reloaded: %+v", r)
	}

	// Removing a limit removes its rule.
	if err := g.Reload(Config{}); err != nil {
		t.Fatal(err)
	}
	if i, ad, b := ruleCounts(g); i+ad+b != 0 {
		t.Fatalf("rules left after reloading the zero Config: %d %d %d", i, ad, b)
	}
}

// Goroutines after New, use and Close are back to the baseline (system
// shedding off: sentinel's collectors are the only goroutines this package
// can cause, see TestSystemCollectorsOnly).
func TestNoGoroutineLeak(t *testing.T) {
	base := runtime.NumGoroutine()
	g, err := New(DefaultConfig(), Options{Name: "leak"})
	if err != nil {
		t.Fatal(err)
	}
	exercise(t, g)
	if err := g.Close(); err != nil {
		t.Fatal(err)
	}
	checkFor(t, 5*time.Second, 20*time.Millisecond, func() error {
		if n := runtime.NumGoroutine(); n > base {
			return fmt.Errorf("%d goroutines, baseline %d", n, base)
		}
		return nil
	})
}

// exercise drives every layer once, tripping the breaker.
func exercise(tb testing.TB, g *Guards) {
	tb.Helper()
	for range 5 {
		if p, blk := g.Publish("tenant", "topic"); blk == nil {
			p.Done(nil)
		}
	}
	s, blk := g.Admit("192.0.2.7")
	if blk != nil {
		tb.Fatalf("Admit: %v", blk)
	}
	release, err := g.Replay(tb.Context())
	if err != nil {
		tb.Fatalf("Replay: %v", err)
	}
	release()
	s.Live()
	s.Done()
	b := g.Breaker("primary")
	for range 50 {
		_ = b.Do(tb.Context(), "XADD", failing)
	}
	if b.State() != StateOpen {
		tb.Fatalf("breaker %s after 50 failures", b.State())
	}
}

// Enabling system shedding starts at most sentinel's two collectors, and
// nothing else, for the life of the process.
func TestSystemCollectorsOnly(t *testing.T) {
	before := goroutineIDs()
	cfg := DefaultConfig()
	cfg.Admission.MaxCPU, cfg.Admission.MaxLoad = 10000, 1000 // far above this machine
	g := mustNew(t, cfg, Options{})
	exercise(t, g)
	if err := g.Close(); err != nil {
		t.Fatal(err)
	}
	var extra []string
	checkFor(t, 5*time.Second, 20*time.Millisecond, func() error {
		extra = extra[:0]
		for id, stack := range goroutineStacks() {
			if !before[id] {
				extra = append(extra, stack)
			}
		}
		for _, s := range extra {
			if !strings.Contains(s, "sentinel-golang/core/system_metric") {
				return fmt.Errorf("unexpected goroutine:\n%s", s)
			}
		}
		return nil
	})
	t.Logf("%d new goroutines, all sentinel collectors", len(extra))
	if len(extra) > 2 {
		t.Fatalf("%d collector goroutines, want ≤ 2", len(extra))
	}
}

func goroutineStacks() map[string]string {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	out := map[string]string{}
	for _, s := range strings.Split(string(buf), "\n\n") {
		id, _, _ := strings.Cut(s, " [")
		out[id] = s
	}
	return out
}

func goroutineIDs() map[string]bool {
	ids := map[string]bool{}
	for id := range goroutineStacks() {
		ids[id] = true
	}
	return ids
}

const helperEnv = "HERALD_RESILIENCE_FILES_HELPER"

// Sentinel writes nothing: in a fresh process whose HOME and working
// directory are empty temporary directories, initialising sentinel and
// driving every layer leaves both empty (no ~/logs/csp, no metric logs),
// and the goroutine count returns to where it started.
func TestNoFilesWritten(t *testing.T) {
	if os.Getenv(helperEnv) != "" {
		t.Skip("running as the helper")
	}
	home, cwd := t.TempDir(), t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestFilesHelperProcess$", "-test.count=1", "-test.v")
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "HOME=") && !strings.HasPrefix(kv, "SENTINEL_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, "HOME="+home, helperEnv+"=1")
	cmd.Dir = cwd
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "HELPER-OK") {
		t.Fatalf("helper: %v\n%s", err, out)
	}
	for _, dir := range []string{home, cwd} {
		var files []string
		_ = filepath.WalkDir(dir, func(p string, _ os.DirEntry, _ error) error {
			if p != dir {
				files = append(files, p)
			}
			return nil
		})
		if len(files) > 0 {
			t.Errorf("files written: %v", files)
		}
	}
}

func TestFilesHelperProcess(t *testing.T) {
	if os.Getenv(helperEnv) == "" {
		t.Skip("helper of TestNoFilesWritten")
	}
	base := runtime.NumGoroutine()
	g, err := New(DefaultConfig(), Options{Name: "files"})
	if err != nil {
		t.Fatal(err)
	}
	exercise(t, g)
	if err := g.Close(); err != nil {
		t.Fatal(err)
	}
	checkFor(t, 5*time.Second, 20*time.Millisecond, func() error {
		if n := runtime.NumGoroutine(); n != base {
			return fmt.Errorf("%d goroutines, baseline %d", n, base)
		}
		return nil
	})
	fmt.Println("HELPER-OK")
}
