package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Multi-process harness: real herald processes on loopback ports, killed
// and signalled like in production. Nodes are built once per test binary:
// without -race for the load and protection tests (a node's speed is a
// production node's there), with -race for the cluster fault tests
// (startTrio: kill -9, SIGSTOP, drain, takeover, rebalance) and the kill -9
// trace and browser tests, where any data race a node reports fails the
// test.

type binaryCache struct {
	once sync.Once
	path string
	err  error
}

// test-only: one build of each kind per test binary
var heraldBin, heraldRaceBin binaryCache

// heraldBinary builds ./cmd/herald once and returns its path.
func heraldBinary(t testing.TB) string { return heraldBin.build(t) }

// heraldRaceBinary builds ./cmd/herald with the race detector once.
func heraldRaceBinary(t testing.TB) string { return heraldRaceBin.build(t, "-race") }

func (b *binaryCache) build(t testing.TB, flags ...string) string {
	t.Helper()
	b.once.Do(func() {
		dir, err := os.MkdirTemp("", "herald-bin-")
		if err != nil {
			b.err = err
			return
		}
		b.path = filepath.Join(dir, "herald")
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		args := append(append([]string{"build"}, flags...), "-o", b.path, ".")
		out, err := exec.CommandContext(ctx, "go", args...).CombinedOutput()
		if err != nil {
			b.err = fmt.Errorf("go %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	})
	if b.err != nil {
		t.Fatal(b.err)
	}
	return b.path
}

// raceReport is how the race detector starts each report.
const raceReport = "WARNING: DATA RACE"

// proc is one herald serve process.
type proc struct {
	t      testing.TB
	name   string
	cmd    *exec.Cmd
	URL    string
	Admin  string
	Gossip string
	WAN    string
	log    *lockedBuffer
	exited chan struct{}
	err    error // exit status, valid after exited closes
}

type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
	// watched patterns, matched as output arrives (the buffer itself keeps
	// only the newest bytes, so a line can be gone when a test looks).
	watched map[string]bool
}

// watch starts looking for pattern in the output from now on.
func (l *lockedBuffer) watch(pattern string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.watched == nil {
		l.watched = map[string]bool{}
	}
	l.watched[pattern] = l.watched[pattern] || strings.Contains(l.b.String(), pattern)
}

// saw reports whether a watched pattern appeared.
func (l *lockedBuffer) saw(pattern string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.watched[pattern]
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.watched) > 0 {
		// Include the end of the previous write: a line can arrive split.
		prev := l.b.String()
		chunk := append([]byte(prev[max(0, len(prev)-256):]), p...)
		for pat, seen := range l.watched {
			if !seen && bytes.Contains(chunk, []byte(pat)) {
				l.watched[pat] = true
			}
		}
	}
	l.b.Write(p)
	if l.b.Len() > 8<<20 { // keep the most recent 4 MiB
		rest := l.b.String()[l.b.Len()-4<<20:]
		l.b.Reset()
		l.b.WriteString(rest)
	}
	return len(p), nil
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// startProc runs `herald serve` with args (plus loopback listeners on free
// ports and dev mode) and waits for its banner.
func startProc(t testing.TB, name string, env []string, args ...string) *proc {
	t.Helper()
	return startProcBin(t, heraldBinary(t), name, env, args...)
}

// startRaceProc is startProc with a node built with -race: a data race it
// reports fails the test.
func startRaceProc(t testing.TB, name string, env []string, args ...string) *proc {
	t.Helper()
	return startProcBin(t, heraldRaceBinary(t), name, env, args...)
}

func startProcBin(t testing.TB, bin, name string, env []string, args ...string) *proc {
	t.Helper()
	base := []string{"serve", "--dev", "--node-name", name, "--listen", "127.0.0.1:0",
		"--admin-listen", "127.0.0.1:0", "--log-level", "info"}
	cmd := exec.Command(bin, append(base, args...)...)
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = procAttr()
	p := &proc{t: t, name: name, cmd: cmd, log: &lockedBuffer{}, exited: make(chan struct{})}
	p.log.watch(raceReport)
	cmd.Stderr = p.log
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			f := strings.Fields(sc.Text())
			switch {
			case len(f) >= 3 && f[0] == "public" && f[1] == "API":
				p.URL = f[2]
			case len(f) >= 2 && f[0] == "admin":
				p.Admin = f[1]
			case len(f) >= 2 && f[0] == "gossip":
				p.Gossip = f[1]
			case len(f) >= 2 && f[0] == "wan":
				p.WAN = f[1]
			case len(f) >= 1 && f[0] == "subscribe:":
				close(ready)
			}
		}
		_, _ = io.Copy(io.Discard, stdout)
	}()
	go func() {
		p.err = cmd.Wait()
		close(p.exited)
	}()
	select {
	case <-ready:
	case <-p.exited:
		t.Fatalf("%s exited at start: %v\n%s", name, p.err, p.log.String())
	case <-time.After(30 * time.Second):
		p.kill()
		t.Fatalf("%s: no banner within 30s\n%s", name, p.log.String())
	}
	t.Cleanup(func() {
		p.kill()
		if p.log.saw(raceReport) {
			log := p.log.String()
			if i := strings.Index(log, raceReport); i >= 0 {
				log = log[i:]
			}
			t.Errorf("%s reported a data race:\n%s", name, tail(log, 200))
		} else if t.Failed() {
			t.Logf("--- log of %s (tail) ---\n%s", name, tail(p.log.String(), 40))
		}
	})
	return p
}

func tail(s string, lines int) string {
	ls := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(ls[max(0, len(ls)-lines):], "\n")
}

func (p *proc) signal(sig syscall.Signal) {
	if p.cmd.Process != nil {
		_ = p.cmd.Process.Signal(sig)
	}
}

// kill sends SIGKILL (and SIGCONT, in case it is stopped) and waits.
func (p *proc) kill() {
	p.signal(syscall.SIGKILL)
	p.signal(syscall.SIGCONT)
	select {
	case <-p.exited:
	case <-time.After(10 * time.Second):
	}
}

// waitExit waits for the process to exit on its own.
func (p *proc) waitExit(timeout time.Duration) (time.Duration, error) {
	start := time.Now()
	select {
	case <-p.exited:
		return time.Since(start), p.err
	case <-time.After(timeout):
		return timeout, fmt.Errorf("%s still running after %s", p.name, timeout)
	}
}

// nodeInfo is GET /v1/node on the admin listener.
type nodeInfo struct {
	Name     string `json:"name"`
	Streams  int64  `json:"streams"`
	Draining bool   `json:"draining"`
}

func getJSON(ctx context.Context, url string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("GET %s: %d %s", url, resp.StatusCode, b)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

func (p *proc) node(t testing.TB) nodeInfo {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var n nodeInfo
	if err := getJSON(ctx, p.Admin+"/v1/node", &n); err != nil {
		t.Fatalf("%s: %v", p.name, err)
	}
	return n
}

// members returns the names and states the process sees.
func (p *proc) members(t testing.TB) map[string]string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var r struct {
		Members []struct{ Name, State string }
	}
	if err := getJSON(ctx, p.Admin+"/v1/cluster/members", &r); err != nil {
		t.Fatalf("%s: %v", p.name, err)
	}
	out := map[string]string{}
	for _, m := range r.Members {
		out[m.Name] = m.State
	}
	return out
}

// waitMembers waits until every process sees exactly names alive.
func waitMembers(t testing.TB, procs []*proc, names ...string) {
	t.Helper()
	want := slices.Sorted(slices.Values(names))
	eventually(t, 30*time.Second, "membership "+strings.Join(want, ","), func() bool {
		for _, p := range procs {
			var alive []string
			for n, s := range p.members(t) {
				if s == "alive" {
					alive = append(alive, n)
				}
			}
			slices.Sort(alive)
			if !slices.Equal(alive, want) {
				return false
			}
		}
		return true
	})
}

// eventually polls cond every 20ms until it holds or timeout passes.
func eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
