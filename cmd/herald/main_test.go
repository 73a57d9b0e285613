package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"testing"
)

// MustRunMain starts a node on free loopback ports with cfg (Listen and
// AdminListen default to port 0) and closes it at cleanup.
func MustRunMain(tb testing.TB, mutate func(*Config)) *Main {
	tb.Helper()
	m := NewMain()
	m.Config.Listen = "127.0.0.1:0"
	m.Config.AdminListen = "127.0.0.1:0"
	m.Config.Dev = true
	m.Config.LogLevel = "warn"
	m.LogOutput = io.Discard
	if testing.Verbose() {
		m.LogOutput = os.Stderr
	}
	if mutate != nil {
		mutate(&m.Config)
	}
	if err := m.Config.Validate(); err != nil {
		tb.Fatalf("config: %v", err)
	}
	if err := m.Run(context.Background()); err != nil {
		tb.Fatalf("run: %v", err)
	}
	tb.Cleanup(func() { _ = m.Close() })
	return m
}

// publishJSON posts one event and fails the test unless it is acknowledged.
func publishJSON(tb testing.TB, base, topic string, body map[string]any) {
	tb.Helper()
	b, _ := json.Marshal(body)
	resp, err := http.Post(base+"/v1/topics/"+topic+"/events", "application/json", bytes.NewReader(b))
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		out, _ := io.ReadAll(resp.Body)
		tb.Fatalf("publish %s: %d %s", topic, resp.StatusCode, out)
	}
}

func TestMainServesAndCloses(t *testing.T) {
	m := MustRunMain(t, nil)
	for _, u := range []string{m.URL() + "/healthz", m.URL() + "/readyz", m.AdminURL() + "/healthz", m.AdminURL() + "/readyz"} {
		resp, err := http.Get(u)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("%s: %d", u, resp.StatusCode)
		}
	}
	publishJSON(t, m.URL(), "demo", map[string]any{"data": "hi"})
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if err := m.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}
