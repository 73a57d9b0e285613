package client

import (
	"bufio"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
)

// wsPeer is a WebSocket server on a raw TCP listener that answers its
// i-th connection with script(i, conn) after the handshake: a server
// that can misbehave at the byte level, as a node's socket cut by a
// write deadline does.
func wsPeer(t *testing.T, script func(i int, c net.Conn)) (url string, conns *atomic.Int64) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	conns = &atomic.Int64{}
	done := make(chan struct{})
	t.Cleanup(func() { ln.Close(); <-done })
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			i := int(conns.Add(1))
			req, err := http.ReadRequest(bufio.NewReader(c))
			if err != nil {
				c.Close()
				continue
			}
			h := sha1.Sum([]byte(req.Header.Get("Sec-WebSocket-Key") + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
			_, _ = c.Write([]byte("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: " +
				base64.StdEncoding.EncodeToString(h[:]) + "\r\n\r\n"))
			script(i, c) // closes c
		}
	}()
	return "http://" + ln.Addr().String(), conns
}

// wsTextHeader is an unmasked text frame's header for a payload of n bytes.
func wsTextHeader(n int) []byte {
	if n < 126 {
		return []byte{0x81, byte(n)}
	}
	return binary.BigEndian.AppendUint16([]byte{0x81, 126}, uint16(n))
}

func wsText(s string) []byte { return append(wsTextHeader(len(s)), s...) }

// A connection that ends in the middle of a message (a node cut a slow
// consumer's socket off mid-write) is a dropped connection: the client
// resumes. coder/websocket hands such a message over as whole, cut short,
// when the cut falls where one of its reads ended; taken for a foreign
// frame it stopped the client for good (ErrNotEventStream).
func TestStreamWSMessageCutByTheConnectionsEndResumes(t *testing.T) {
	hello := wsText(`{"id":"c1","event":"herald.hello","data":"{\"session\":\"0000000000000001\",\"topics\":[\"a\"]}"}`)
	url, conns := wsPeer(t, func(i int, c net.Conn) {
		defer c.Close()
		_, _ = c.Write(hello)
		if i == 1 {
			// A 1000-byte message of which exactly 512 bytes arrive
			// before the end: one full read of io.ReadAll's first
			// buffer, then EOF.
			msg := `{"id":"c2","event":"tick","topic":"a","data":"` + strings.Repeat("x", 1000)
			_, _ = c.Write(append(wsTextHeader(1000), msg[:512]...))
			return
		}
		_, _ = c.Write(wsText(`{"id":"c2","event":"tick","topic":"a","data":"whole"}`))
		// Hold until the client leaves.
		_, _ = c.Read(make([]byte, 1))
	})
	cfg := fastConfig(url)
	cfg.Topics, cfg.From, cfg.Token, cfg.Transport = []string{"a"}, "", "", TransportWS
	var got []Event
	err := Subscribe(cfg).Run(testContext(t), func(e Event) error {
		if e.IsControl() {
			return nil
		}
		got = append(got, e)
		return errDone
	})
	if !errors.Is(err, errDone) || len(got) != 1 || got[0].Data != "whole" {
		t.Fatalf("Run = %v after %d connections, events %+v; want the whole event from the second connection", err, conns.Load(), got)
	}
	if n := conns.Load(); n != 2 {
		t.Fatalf("%d connections, want 2 (the cut one, then the resume)", n)
	}
}
