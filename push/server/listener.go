package server

import "net"

// LimitSendBuffer wraps a TCP listener so that every accepted connection
// gets a fixed socket send buffer of bytes (SO_SNDBUF; the kernel doubles
// it for bookkeeping) instead of the kernel's autotuned one, which grows to
// megabytes. With a bounded buffer, a client that stops reading makes the
// server's writes block within a few hundred events, so its per-write
// deadline and queue bounds cut it off, rather than the kernel quietly
// holding seconds of stale events for it. bytes ≤ 0 returns ln unchanged.
func LimitSendBuffer(ln net.Listener, bytes int) net.Listener {
	if bytes <= 0 {
		return ln
	}
	return sendBufferListener{ln, bytes}
}

type sendBufferListener struct {
	net.Listener
	bytes int
}

func (l sendBufferListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetWriteBuffer(l.bytes) // best effort: a failure leaves autotuning on
	}
	return c, nil
}
