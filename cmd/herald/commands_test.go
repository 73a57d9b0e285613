package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/heraldpush/herald/push/client"
)

// closedPort returns a loopback address nothing listens on.
func closedPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// `herald token` without flags used to say "audience: required".
func TestTokenNamesMissingFlags(t *testing.T) {
	_, _, err := runCLI(t, nil, "token")
	if err == nil {
		t.Fatal("token without flags succeeded")
	}
	for _, flag := range []string{"--aud", "--sub", "--key-file"} {
		if !strings.Contains(err.Error(), flag) {
			t.Errorf("error does not name %s: %v", flag, err)
		}
	}
}

// `herald members` against a stopped node used to print a bare dial error.
func TestMembersSuggestsAdminFlag(t *testing.T) {
	addr := closedPort(t)
	_, _, err := runCLI(t, nil, "members", "--admin", "http://"+addr)
	if err == nil {
		t.Fatal("members against nothing succeeded")
	}
	for _, want := range []string{addr, "--admin", defaultAdminURL, "connection refused"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q: %v", want, err)
		}
	}
}

// `herald tail` against nothing used to print nothing and retry silently.
func TestTailReportsConnectFailures(t *testing.T) {
	addr := closedPort(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	root := newRootCommand(func() []string { return nil })
	var out bytes.Buffer
	stderr := &lockedBuffer{}
	for _, p := range []string{"connection refused", "failures=2", "reconnect_in="} {
		stderr.watch(p)
	}
	root.SetOut(&out)
	root.SetErr(stderr)
	root.SetArgs([]string{"tail", "--url", "http://" + addr, "--topic", "x"})
	done := make(chan error, 1)
	go func() { done <- root.ExecuteContext(ctx) }()
	deadline := time.Now().Add(15 * time.Second)
	for !(stderr.saw("connection refused") && stderr.saw("failures=2") && stderr.saw("reconnect_in=")) {
		if time.Now().After(deadline) {
			t.Fatalf("no retry report on stderr: %q", stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("tail: %v", err)
	}
	if !strings.Contains(stderr.String(), "connecting to http://"+addr) {
		t.Errorf("stderr does not say where it connects: %q", stderr.String())
	}
	if out.Len() != 0 {
		t.Errorf("stdout carries non-events: %q", out.String())
	}
}

// The admin listener defaulted to 9090, Prometheus' own port, and `make
// run` hard-coded both addresses.
func TestDefaultPortsAndMakeRunOverrides(t *testing.T) {
	d := DefaultConfig()
	_, admin, _ := net.SplitHostPort(d.AdminListen)
	_, public, _ := net.SplitHostPort(d.Listen)
	if admin == "9090" || admin == public {
		t.Errorf("admin_listen default %s clashes (Prometheus is 9090; public is %s)", d.AdminListen, public)
	}
	if _, err := exec.LookPath("make"); err != nil {
		t.Skip("make not on PATH")
	}
	out, err := exec.Command("make", "-s", "-n", "-C", "../..", "run", "LISTEN=127.0.0.1:7001", "ADMIN_LISTEN=127.0.0.1:7002").CombinedOutput()
	if err != nil {
		t.Fatalf("make -n run: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "--listen '127.0.0.1:7001' --admin-listen '127.0.0.1:7002'") {
		t.Errorf("make run ignores LISTEN/ADMIN_LISTEN:\n%s", out)
	}
	out, err = exec.Command("make", "-s", "-n", "-C", "../..", "run").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "--admin-listen '"+d.AdminListen+"'") {
		t.Errorf("make run default admin address is not the built-in default %s: %v\n%s", d.AdminListen, err, out)
	}
}

// `herald tail` follows a topic over either transport and prints the same
// events; an id printed by one transport resumes the other.
func TestTailOverBothTransports(t *testing.T) {
	m := MustRunMain(t, nil)
	publishJSON(t, m.URL(), "tt", map[string]any{"data": "one"})
	publishJSON(t, m.URL(), "tt", map[string]any{"data": "two\nlines"})
	run := func(transport string, extra ...string) []client.Event {
		t.Helper()
		var out bytes.Buffer
		root := newRootCommand(func() []string { return nil })
		root.SetOut(&out)
		root.SetErr(io.Discard)
		root.SetArgs(append([]string{"tail", "--url", m.URL(), "--topic", "tt", "--count", "2", "--transport", transport}, extra...))
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if err := root.ExecuteContext(ctx); err != nil {
			t.Fatalf("tail --transport %s: %v", transport, err)
		}
		var evs []client.Event
		dec := json.NewDecoder(&out)
		for {
			var ev client.Event
			if dec.Decode(&ev) != nil {
				break
			}
			if !strings.HasPrefix(ev.Type, "herald.") {
				evs = append(evs, ev)
			}
		}
		return evs
	}
	sse := run("sse", "--from", "earliest")
	ws := run("ws", "--from", "earliest")
	if len(sse) != 2 || len(ws) != 2 || sse[0].Data != ws[0].Data || sse[1].Data != ws[1].Data || ws[1].Data != "two\nlines" {
		t.Fatalf("sse %+v, ws %+v: want the same two events", sse, ws)
	}
	publishJSON(t, m.URL(), "tt", map[string]any{"data": "three"})
	publishJSON(t, m.URL(), "tt", map[string]any{"data": "four"})
	next := run("ws", "--last-event-id", sse[1].ID)
	if len(next) != 2 || next[0].Data != "three" || next[1].Data != "four" {
		t.Fatalf("ws resumed from an sse id: %+v, want three, four", next)
	}
}
