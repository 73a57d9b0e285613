package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/heraldpush/herald/push/sse"
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

// TestTLSServesHTTP2Streams checks the public listener with TLS: HTTP/2 is
// negotiated, and the stream has the SSE headers and no Connection header.
func TestTLSServesHTTP2Streams(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := writeSelfSigned(t, dir)
	m := MustRunMain(t, func(c *Config) { c.TLSCertFile, c.TLSKeyFile = certFile, keyFile })
	if !strings.HasPrefix(m.URL(), "https://") {
		t.Fatalf("URL %s", m.URL())
	}
	pool := x509.NewCertPool()
	certPEM, _ := os.ReadFile(certFile)
	pool.AppendCertsFromPEM(certPEM)
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, ForceAttemptHTTP2: true}}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", m.URL()+"/v1/stream?topic=a", nil)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.ProtoMajor != 2 {
		t.Fatalf("protocol %s, want HTTP/2", resp.Proto)
	}
	if resp.Header.Get("Connection") != "" || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("headers %v", resp.Header)
	}
	dec := sse.NewDecoder(resp.Body)
	ev, err := dec.Next()
	if err != nil || ev.Type != "herald.hello" {
		t.Fatalf("first event %+v %v", ev, err)
	}
}

func writeSelfSigned(t *testing.T, dir string) (string, string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalECPrivateKey(key)
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(certFile, encodePEM("CERTIFICATE", der), 0o600)
	os.WriteFile(keyFile, encodePEM("EC PRIVATE KEY", kb), 0o600)
	return certFile, keyFile
}

func encodePEM(typ string, b []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: b})
}
