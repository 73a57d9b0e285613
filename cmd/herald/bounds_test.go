package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/heraldpush/herald/push/auth"
)

// slowBody opens a raw connection to base and sends a POST to path whose
// declared body of size bytes then trickles one byte every 100ms, from a
// goroutine that stops when the connection fails or the test ends.
func slowBody(t *testing.T, base, path, extraHeaders string, size int) net.Conn {
	t.Helper()
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.DialTimeout("tcp", u.Host, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	fmt.Fprintf(c, "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n%s\r\n{", path, u.Host, size, extraHeaders)
	stop := make(chan struct{})
	t.Cleanup(func() { close(stop) })
	go func() {
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for range size - 2 {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			if _, err := c.Write([]byte(" ")); err != nil {
				return
			}
		}
	}()
	return c
}

// answerAndClose reads the one answer on c and then expects the server to
// close the connection, all within limit. It returns the answer.
func answerAndClose(t *testing.T, c net.Conn, limit time.Duration) (*http.Response, []byte) {
	t.Helper()
	start := time.Now()
	_ = c.SetReadDeadline(start.Add(limit))
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("no answer to a slow body within %s: %v", limit, err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatalf("answer body: %v", err)
	}
	// Closed: EOF, or a reset when the server closed with the rest of
	// the trickled body unread.
	if _, err := br.ReadByte(); err != io.EOF && !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("connection not closed after the answer (read: %v) after %s", err, time.Since(start))
	}
	return resp, body
}

// TestSlowBodiesAreCutOff: bodies sent one byte at a time (slowloris) are
// cut off at limits.body_timeout, whether the sender is unauthenticated
// (answered before its body is read) or a publisher (408 JSON), and the
// connection is closed in both cases.
func TestSlowBodiesAreCutOff(t *testing.T) {
	if testing.Short() {
		t.Skip("holds slow connections for seconds")
	}
	key, hash, err := auth.GenerateAPIKey()
	if err != nil {
		t.Fatal(err)
	}
	const bodyTimeout = 2 * time.Second
	m := MustRunMain(t, func(c *Config) {
		c.Dev = false
		c.Limits.BodyTimeout = bodyTimeout
		c.Auth.APIKeys = []auth.APIKeyConfig{{ID: "pub", Hash: hash, Publish: []string{"*"}, Subscribe: []string{"*"}}}
	})
	const size = 1000 // 100 s at one byte per 100 ms
	anon := slowBody(t, m.URL(), "/v1/topics/t/events", "", size)
	pub := slowBody(t, m.URL(), "/v1/topics/t/events", "Authorization: Bearer "+key+"\r\n", size)
	batch := slowBody(t, m.URL(), "/v1/events", "Authorization: Bearer "+key+"\r\n", size)
	limit := bodyTimeout + 8*time.Second

	resp, body := answerAndClose(t, anon, limit)
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("unauthenticated slow body: %d %s, want 401", resp.StatusCode, body)
	}
	for name, c := range map[string]net.Conn{"publish": pub, "batch": batch} {
		resp, body := answerAndClose(t, c, limit)
		var e struct{ Error struct{ Code string } }
		_ = json.Unmarshal(body, &e)
		if resp.StatusCode != http.StatusRequestTimeout || e.Error.Code != "request_timeout" {
			t.Errorf("%s slow body: %d %s, want 408 request_timeout", name, resp.StatusCode, body)
		}
	}
	// The node still serves ordinary requests.
	req, _ := http.NewRequest(http.MethodPost, m.URL()+"/v1/topics/t/events", strings.NewReader(`{"data":"ok"}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+key)
	r, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	r.Body.Close()
	if r.StatusCode != http.StatusCreated {
		t.Fatalf("publish after the slow bodies: %d", r.StatusCode)
	}
}

// TestRequestsPerIPAreCapped: one address may hold at most
// protection.admission.max_requests_per_ip non-stream requests at once;
// the next gets 429 with Retry-After and a closed connection, and once the
// held ones are cut off the address is served again. Streams do not count.
func TestRequestsPerIPAreCapped(t *testing.T) {
	if testing.Short() {
		t.Skip("holds slow connections for seconds")
	}
	const held = 3
	m := MustRunMain(t, func(c *Config) {
		c.Limits.BodyTimeout = 3 * time.Second
		c.Protection.Admission.MaxRequestsPerIP = held
	})
	// A stream from the same address is not a request in flight.
	st := openTelStream(t, m.URL(), "topic=t", nil)
	_ = st.hello(t)
	for range held {
		slowBody(t, m.URL(), "/v1/topics/t/events", "", 1000)
	}
	// Poll until the held requests are admitted: the next is refused.
	var refused *http.Response
	var body []byte
	deadline := time.Now().Add(10 * time.Second)
	for refused == nil {
		if time.Now().After(deadline) {
			t.Fatal("a request over max_requests_per_ip was never refused")
		}
		resp, err := http.Get(m.URL() + "/v1/topics/t")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == http.StatusTooManyRequests {
			refused, body = resp, b
		}
	}
	var e struct{ Error struct{ Code string } }
	_ = json.Unmarshal(body, &e)
	if e.Error.Code != "rate_limited" || refused.Header.Get("Retry-After") == "" || !refused.Close {
		t.Fatalf("refusal: %d %s, Retry-After %q, close %v; want rate_limited, Retry-After, Connection: close",
			refused.StatusCode, body, refused.Header.Get("Retry-After"), refused.Close)
	}
	// The held requests end at their body deadline; then requests pass.
	deadline = time.Now().Add(15 * time.Second)
	for {
		resp, err := http.Get(m.URL() + "/v1/topics/t")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("requests still refused (%d) after the held bodies' deadline", resp.StatusCode)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
