package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heraldpush/herald/observability"
	"github.com/heraldpush/herald/push/auth"
	"github.com/heraldpush/herald/push/client"
	"github.com/heraldpush/herald/push/ingest"
	"github.com/heraldpush/herald/push/redistest"
)

// shipperConfig is the syslog-ng configuration README "Log push" shows; the
// test runs it as it is.
var shipperConfig = filepath.Join("..", "..", "deploy", "shippers", "syslog-ng.conf")

// TestSyslogNGShipsLogsToSubscribersAcrossNodeRestart: a real syslog-ng
// (Debian's, with its http() destination) runs the shipped configuration
// and posts the lines two applications write to its socket (with logger)
// to a Herald process on its own Redis; a subscriber holds one SSE stream
// on both log types (topics logs.api.info and logs.worker.err, rendered
// by the key's ingest profile from each line's fields). While lines flow,
// the node is killed with SIGKILL and started again on the same address.
// Every line must reach the subscriber exactly once, in order per log
// type, and syslog-ng must report nothing dropped.
func TestSyslogNGShipsLogsToSubscribersAcrossNodeRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process shipper test")
	}
	sng := requireTool(t, "syslog-ng")
	ctl := requireTool(t, "syslog-ng-ctl")
	logger := requireTool(t, "logger")
	const perApp = 1500

	rs := redistest.StartServer(t)
	shipKey, shipHash, err := auth.GenerateAPIKey()
	if err != nil {
		t.Fatal(err)
	}
	tailKey, tailHash, err := auth.GenerateAPIKey()
	if err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(t.TempDir(), "herald.yaml")
	writeConfig(t, cfg, fmt.Sprintf(`auth:
  api_keys:
    - {id: syslog-ng, hash: "%s", tenant: ops, publish: ["logs.*"]}
    - {id: tail, hash: "%s", subscribe: ["logs.*"]}
protection:
  ingress:
    tenants: {ops: 2000}   # lines per second; the feed offers about 3000
    topic_qps: 0
ingest:
  profiles:
    - api_key: syslog-ng
      topic: "logs.{app}.{level}"
      default_topic: logs.unsorted
      dedup: field
      dedup_field: id
`, shipHash, tailHash))
	addr := freeAddr(t) // fixed: the restarted node keeps the shipper's URL
	args := []string{"--dev=false", "--config", cfg, "--redis", rs.URL(), "--listen", addr}
	node := startProc(t, "logs-1", nil, args...)

	sh := startSyslogNG(t, sng, ctl, node.URL, shipKey)

	// The subscriber: one resuming SSE stream over both log types.
	type line struct {
		App, Level, Msg string
	}
	var (
		mu       sync.Mutex
		received = map[string][]string{} // "app.level" -> msgs in arrival order
		total    atomic.Int64
		connects atomic.Int64
	)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sub := client.Subscribe(client.StreamConfig{
		Endpoints:  []string{node.URL},
		Topics:     []string{"logs.api.info", "logs.worker.err"},
		From:       "earliest",
		Header:     http.Header{"X-Api-Key": {tailKey}},
		MinBackoff: 50 * time.Millisecond, MaxBackoff: 500 * time.Millisecond,
		OnConnect: func(string) { connects.Add(1) },
	})
	subDone := make(chan error, 1)
	go func() {
		subDone <- sub.Run(ctx, func(ev client.Event) error {
			if ev.Type != "log" {
				return nil // herald.hello
			}
			var l line
			if err := json.Unmarshal([]byte(ev.Data), &l); err != nil {
				return fmt.Errorf("event data %q: %w", ev.Data, err)
			}
			mu.Lock()
			received[l.App+"."+l.Level] = append(received[l.App+"."+l.Level], l.Msg)
			mu.Unlock()
			total.Add(1)
			return nil
		})
	}()

	// Two applications log through syslog-ng's socket, paced, until the
	// gate: three quarters in, they wait until the node was killed, so the
	// kill lands while lines are in flight and more are still to come.
	gate := make(chan struct{})
	feedDone := make(chan error, 2)
	for _, app := range []struct{ tag, prio string }{{"api", "user.info"}, {"worker", "user.err"}} {
		go func() { feedDone <- feedLogger(logger, sh.socket, app.tag, app.prio, perApp, gate) }()
	}
	eventually(t, 60*time.Second, "a quarter of the lines at the subscriber", func() bool { return total.Load() >= perApp/2 })
	node.kill()
	close(gate)
	t.Logf("node killed with %d of %d lines at the subscriber", total.Load(), 2*perApp)
	// The node comes back only after syslog-ng found it gone: the shipper
	// lives through the outage with lines in hand.
	eventually(t, 30*time.Second, "syslog-ng failing to post to the dead node", func() bool { return sh.failedPosts() > 0 })
	node = startProc(t, "logs-2", nil, args...)

	for range 2 {
		select {
		case err := <-feedDone:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(60 * time.Second):
			t.Fatal("logger feeders did not finish within 60s")
		}
	}
	eventually(t, 60*time.Second, "every line at the subscriber", func() bool { return total.Load() >= 2*perApp })
	cancel()
	if err := <-subDone; err != nil && !errors.Is(err, context.Canceled) {
		t.Fatalf("subscriber: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	for _, typ := range []string{"api.info", "worker.err"} {
		got := received[typ]
		if len(got) != perApp {
			t.Errorf("%s: received %d lines, want %d", typ, len(got), perApp)
		}
		for i := range min(len(got), perApp) {
			if want := fmt.Sprintf("seq=%06d", i); got[i] != want {
				t.Errorf("%s: line %d is %q, want %q (lost, duplicated or out of order)", typ, i, got[i], want)
				break
			}
		}
	}
	if connects.Load() < 2 {
		t.Errorf("subscriber connected %d times, want a reconnect after the kill", connects.Load())
	}
	// The store holds each line once too (a retried batch answered as
	// duplicates, not appended again).
	for _, topic := range []string{"logs.api.info", "logs.worker.err"} {
		req, _ := http.NewRequest(http.MethodGet, node.URL+"/v1/topics/"+topic, nil)
		req.Header.Set("X-Api-Key", tailKey)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var info struct {
			Length int64 `json:"length"`
		}
		err = json.NewDecoder(resp.Body).Decode(&info)
		resp.Body.Close()
		if err != nil || info.Length != perApp {
			t.Errorf("%s holds %d events (err %v), want %d", topic, info.Length, err, perApp)
		}
	}
	st := sh.stats(t)
	t.Logf("syslog-ng destination: %+v; %d posts failed (node down), %d pushed back with 429", st, sh.failedPosts(), sh.pushedBack())
	if st.dropped != 0 || st.written != 2*perApp {
		t.Errorf("syslog-ng: written %d dropped %d, want %d and 0", st.written, st.dropped, 2*perApp)
	}
}

// TestReadmeShowsTheTestedShipperConfig: README "Log push" quotes the
// syslog-ng configuration the shipper test runs, byte for byte.
func TestReadmeShowsTheTestedShipperConfig(t *testing.T) {
	conf, err := os.ReadFile(shipperConfig)
	if err != nil {
		t.Fatal(err)
	}
	readme, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(readme), "```conf\n"+string(conf)+"```") {
		t.Errorf("README.md does not show %s as it is; copy it into section \"Log push\"", shipperConfig)
	}
}

// shipper is a syslog-ng process running shipperConfig.
type shipper struct {
	socket, ctl string
	ctlBin      string
	log         *lockedBuffer
}

// startSyslogNG runs syslog-ng in the foreground with the shipped
// configuration, its own socket, persist file and control socket (no
// system service), posting to heraldURL with key.
func startSyslogNG(t *testing.T, bin, ctlBin, heraldURL, key string) *shipper {
	t.Helper()
	// A short directory: unix socket paths are limited to 108 bytes.
	dir, err := os.MkdirTemp("", "sng")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sh := &shipper{socket: filepath.Join(dir, "log.sock"), ctl: filepath.Join(dir, "ctl"), ctlBin: ctlBin, log: &lockedBuffer{}}
	env := append(os.Environ(), "HERALD_URL="+heraldURL, "HERALD_API_KEY="+key, "LOG_SOCKET="+sh.socket)
	// The http() destination is a module of its own (syslog-ng-mod-http):
	// without it the configuration does not load.
	check := exec.Command(bin, "--syntax-only", "-f", shipperConfig)
	check.Env = env
	if out, err := check.CombinedOutput(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("syslog-ng cannot load %s (is syslog-ng-mod-http installed? make deps installs it): %v\n%s", shipperConfig, err, out)
		}
		t.Skipf("syslog-ng cannot load %s (install syslog-ng-mod-http): %v\n%s", shipperConfig, err, out)
	}
	cmd := exec.Command(bin, "-F", "-e", "--no-caps", "-f", shipperConfig,
		"-R", filepath.Join(dir, "persist"), "-p", filepath.Join(dir, "pid"), "-c", sh.ctl)
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = sh.log, sh.log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
		if t.Failed() {
			t.Logf("--- syslog-ng log (tail) ---\n%s", tail(sh.log.String(), 40))
		}
	})
	eventually(t, 20*time.Second, "syslog-ng listening on its socket", func() bool {
		select {
		case <-exited:
			t.Fatalf("syslog-ng exited at start:\n%s", sh.log.String())
		default:
		}
		_, err := os.Stat(sh.socket)
		return err == nil
	})
	return sh
}

var (
	failedPost = regexp.MustCompile(`curl: error sending HTTP request`)
	pushedBack = regexp.MustCompile(`status_code='429'`)
)

// failedPosts counts the posts syslog-ng could not make (no node).
func (sh *shipper) failedPosts() int { return len(failedPost.FindAllString(sh.log.String(), -1)) }

// pushedBack counts the posts Herald refused with 429.
func (sh *shipper) pushedBack() int { return len(pushedBack.FindAllString(sh.log.String(), -1)) }

type shipperStats struct{ written, dropped, queued int64 }

// stats reads the http() destination's counters with syslog-ng-ctl.
func (sh *shipper) stats(t *testing.T) shipperStats {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, sh.ctlBin, "stats", "-c", sh.ctl).CombinedOutput()
	if err != nil {
		t.Fatalf("syslog-ng-ctl stats: %v\n%s", err, out)
	}
	var st shipperStats
	found := false
	for _, l := range strings.Split(string(out), "\n") {
		// SourceName;SourceId;SourceInstance;State;Type;Number
		f := strings.Split(l, ";")
		if len(f) != 6 || !strings.Contains(f[1], "d_herald") {
			continue
		}
		found = true
		n, _ := strconv.ParseInt(f[5], 10, 64)
		switch f[4] {
		case "written":
			st.written += n
		case "dropped":
			st.dropped += n
		case "queued":
			st.queued += n
		}
	}
	if !found {
		t.Fatalf("syslog-ng-ctl stats shows no d_herald counters:\n%s", out)
	}
	return st
}

// feedLogger writes n lines "seq=000000".. with logger to syslog-ng's
// socket as application tag at priority prio, about 1500 lines a second,
// pausing three quarters in until gate closes.
func feedLogger(bin, socket, tag, prio string, n int, gate <-chan struct{}) error {
	cmd := exec.Command(bin, "--socket-errors=on", "-u", socket, "-t", tag, "-p", prio)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return err
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		return err
	}
	w := bufio.NewWriter(stdin)
	werr := func() error {
		for i := range n {
			if i == n*3/4 {
				<-gate
			}
			if _, err := fmt.Fprintf(w, "seq=%06d\n", i); err != nil {
				return err
			}
			if i%15 == 14 {
				if err := w.Flush(); err != nil {
					return err
				}
				time.Sleep(10 * time.Millisecond) // pacing, not synchronisation
			}
		}
		return w.Flush()
	}()
	_ = stdin.Close()
	if err := cmd.Wait(); err != nil || werr != nil {
		return fmt.Errorf("logger -t %s: %v %v: %s", tag, werr, err, stderr.String())
	}
	return nil
}

// herald_ingest_lines_total counts a request's lines by result on a live
// node's /metrics.
func TestIngestLinesMetric(t *testing.T) {
	m := runTelemetryNode(t, io.Discard, func(c *Config) {
		c.Ingest.Profiles = []ingest.ProfileConfig{{APIKey: "*", Topic: "logs.{app}", Dedup: "hash"}}
	})
	post := func(body string) {
		resp, err := http.Post(m.URL()+"/v1/ingest", "application/x-ndjson", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	post(`{"app":"a","n":1}` + "\n" + `{"app":"a","n":2}` + "\n" + "not json\n" + `{"app":"b c"}` + "\n")
	post(`{"app":"a","n":1}` + "\n")
	want := map[string]float64{observability.IngestOK: 2, observability.IngestDuplicate: 1, observability.IngestRejected: 2,
		observability.IngestLimited: 0, observability.IngestUnavailable: 0}
	fams := scrapeNode(t, m)
	for result, n := range want {
		got, ok := seriesValue(fams, observability.MetricIngestLines, map[string]string{observability.LabelResult: result})
		if !ok || got != n {
			t.Errorf("%s{result=%q} = %v (present %v), want %v", observability.MetricIngestLines, result, got, ok, n)
		}
	}
}
