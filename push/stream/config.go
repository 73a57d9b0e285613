package stream

import (
	"github.com/heraldpush/herald/internal/defaults"

	"time"

	"github.com/heraldpush/herald/push/hub"
)

// Config tunes streams. New fills zero fields from DefaultConfig, except
// CoalesceWindow, whose zero value turns coalescing off.
type Config struct {
	// Heartbeat is the keep-alive interval (≥ 1s): one ticker wakes the
	// streams that wrote nothing for half of it or more, and each writes a
	// keep-alive (an SSE comment, a WebSocket ping); busy streams are not
	// woken. Proxies must allow idle streams longer than this.
	Heartbeat time.Duration `koanf:"heartbeat"`
	// RetryMin and RetryMax bound the jittered reconnection delay sent at
	// connect (SSE `retry:`, the WebSocket hello's retry hint).
	RetryMin time.Duration `koanf:"retry_min"`
	// RetryMax is the upper bound of the jittered reconnection delay (≥
	// retry_min).
	RetryMax time.Duration `koanf:"retry_max"`
	// WriteTimeout is the per-write deadline; a client that cannot take a
	// write in time is cut off (it resumes from its cursor).
	WriteTimeout time.Duration `koanf:"write_timeout"`
	// CoalesceWindow is write coalescing under overload (ADR 0008, ADR
	// 0020). It engages only while the node is overloaded: at least 1 in 4
	// of its writes in the last 500 ms went out behind (their oldest event
	// waited > 20 ms and longer than the stream's own gap between events,
	// so its queue grew). Then, once a stream's write went out late with
	// fewer than 4 events, and its events are published less than half
	// this window apart on average, events arriving within this window of
	// that write wait and go out in one write: fewer syscalls and client
	// wake-ups, at most this much added latency. A node that is not
	// overloaded writes every event at once, however wide its fan-out; 0
	// turns coalescing off (max 1s).
	CoalesceWindow time.Duration `koanf:"coalesce_window"`
	// CoalesceLate is the queue wait that counts as late; a negative value
	// counts every write as late on a node taken as overloaded (tests).
	CoalesceLate time.Duration `koanf:"-"`
	// ReplayPage is the number of events read per history page.
	ReplayPage int `koanf:"-"`
	// Queue bounds each stream's live queue (see hub.Limits; its zero
	// fields are hub's defaults).
	Queue hub.Limits `koanf:"-"`
}

// DefaultConfig returns the documented defaults.
func DefaultConfig() Config {
	return Config{
		Heartbeat:    15 * time.Second,
		RetryMin:     time.Second,
		RetryMax:     5 * time.Second,
		WriteTimeout: 10 * time.Second,
		// Engages only on a node whose writes fall behind (benchmarks.md, overload).
		CoalesceWindow: 250 * time.Millisecond,
		CoalesceLate:   20 * time.Millisecond,
		ReplayPage:     500,
	}
}

// WithDefaults returns c with its zero fields (but CoalesceWindow) set from
// DefaultConfig.
func (c Config) WithDefaults() Config {
	d := DefaultConfig()
	defaults.Positive(&c.Heartbeat, d.Heartbeat)
	defaults.Positive(&c.RetryMin, d.RetryMin)
	if c.RetryMax < c.RetryMin {
		c.RetryMax = max(d.RetryMax, c.RetryMin)
	}
	if c.CoalesceLate == 0 {
		c.CoalesceLate = d.CoalesceLate
	}
	defaults.Positive(&c.WriteTimeout, d.WriteTimeout)
	defaults.Positive(&c.ReplayPage, d.ReplayPage)
	return c
}
