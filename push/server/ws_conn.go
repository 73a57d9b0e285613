package server

import (
	"bufio"
	"net"
	"net/http"
	"sync"
	"time"
)

// corkWriter hands coder/websocket a connection whose writes can be held
// back and sent together: coder/websocket flushes every message, so a
// stream's batch of N events would be N system calls where SSE makes one.
// While corked, writes (messages, and the library's own pongs and closes)
// are gathered; uncork sends them in one write under a real per-write
// deadline.
type corkWriter struct {
	http.ResponseWriter
	timeout time.Duration
	conn    *corkConn
}

// Unwrap lets http.ResponseController and gin reach the writer.
func (w *corkWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// WriteHeaderNow is gin's; coder/websocket calls it after the 101.
func (w *corkWriter) WriteHeaderNow() {
	if g, ok := w.ResponseWriter.(interface{ WriteHeaderNow() }); ok {
		g.WriteHeaderNow()
	}
}

// Hijack returns the connection wrapped in a corkConn, and a buffered
// writer over it (the server's own writer is flushed first: it holds the
// 101 answer).
func (w *corkWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	conn, brw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, err
	}
	if err := brw.Writer.Flush(); err != nil {
		conn.Close()
		return nil, nil, err
	}
	w.conn = &corkConn{Conn: conn, timeout: w.timeout}
	return w.conn, bufio.NewReadWriter(brw.Reader, bufio.NewWriterSize(w.conn, 4096)), nil
}

// corkConn is a net.Conn whose writes are gathered while corked.
type corkConn struct {
	net.Conn
	mu     sync.Mutex
	corked bool
	buf    []byte
	// deadline is the write deadline armed on the connection; timeout
	// bounds every write (stream.write_timeout).
	deadline time.Time
	timeout  time.Duration
}

// arm re-arms the write deadline when less than half of timeout remains
// (a timer update per write would cost more; a stalled write still fails
// within timeout). Every write needs it: the connection's deadline also
// applies to the library's own writes (pongs, the close frame). c.mu held.
func (c *corkConn) arm() {
	if now := time.Now(); c.deadline.Sub(now) < c.timeout/2 {
		c.deadline = now.Add(c.timeout)
		_ = c.Conn.SetWriteDeadline(c.deadline)
	}
}

func (c *corkConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	if c.corked {
		c.buf = append(c.buf, p...)
		c.mu.Unlock()
		return len(p), nil
	}
	c.arm()
	c.mu.Unlock()
	return c.Conn.Write(p)
}

func (c *corkConn) cork() {
	c.mu.Lock()
	c.corked = true
	c.mu.Unlock()
}

// uncork sends what was gathered in one write that must finish within
// the timeout (os.ErrDeadlineExceeded otherwise).
func (c *corkConn) uncork() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.corked = false
	if len(c.buf) == 0 {
		return nil
	}
	c.arm()
	_, err := c.Conn.Write(c.buf)
	if cap(c.buf) > 4<<10 {
		c.buf = nil // an idle stream keeps no large buffer
	} else {
		c.buf = c.buf[:0]
	}
	return err
}
