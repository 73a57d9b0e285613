package stream

import (
	"fmt"
	"net/http"
	"runtime/debug"
)

// OnFreshStack runs f on a new goroutine and waits for it, so that the deep
// call chains f makes grow that goroutine's stack, which is freed when it
// exits, instead of the caller's (see Stream.Live and the transports' handlers). A panic in f is
// raised again in the caller, with f's stack trace in its value, so the
// handler's recovery sees it as if f had run inline; http.ErrAbortHandler
// is raised again as is.
func OnFreshStack(f func()) {
	var (
		failed = true
		val    any
		stack  []byte
	)
	done := make(chan struct{})
	go func() {
		defer close(done)
		growFresh(0)
		defer func() {
			if failed {
				val = recover()
				stack = debug.Stack()
			}
		}()
		f()
		failed = false
	}()
	<-done
	if !failed {
		return
	}
	if val == http.ErrAbortHandler {
		panic(val)
	}
	panic(&FreshStackPanic{val: val, stack: stack})
}

// freshStackPad is the stack a connect phase reaches (auth, admission,
// the store client and the writer down to the system call): about 12 KiB,
// so the goroutine's stack ends at 16 KiB. Grown in steps from the 2 KiB a
// goroutine starts with, the stack would be copied three times, each deeper
// than the last, and a copy costs per frame (every frame's pointers are
// adjusted): a fifth of the node's CPU per connect here (docs/benchmarks.md,
// "Issue 20 item 4, session 11"). Grown first, at two frames deep, it is
// copied once, cheaply. The stack is the short-lived goroutine's, freed
// when it exits: no idle stream keeps it.
const freshStackPad = 12 << 10

// growFresh grows the calling goroutine's stack, once, to hold a
// freshStackPad frame (see OnFreshStack).
//
//go:noinline
func growFresh(i int) byte {
	var pad [freshStackPad]byte
	return pad[i%len(pad)]
}

// FreshStackPanic carries a panic from OnFreshStack's goroutine.
type FreshStackPanic struct {
	val   any
	stack []byte
}

// String is the panic value's text; the stack is logged apart (recover).
func (p *FreshStackPanic) String() string { return fmt.Sprint(p.val) }

// Unwrap lets errors.Is and errors.As see an error the panic carried.
func (p *FreshStackPanic) Unwrap() error {
	err, _ := p.val.(error)
	return err
}

func (p *FreshStackPanic) Error() string { return p.String() }

// liveStackPad is a frame big enough that, placed where the live loop
// starts, it needs more stack than the goroutine has, as a delivery would:
// deliver and its telemetry, and the flush down through net/http to the
// write system call, reach about 4 KiB into a goroutine that net/http and
// gin already occupy, so the 4 KiB stack it parks with doubles on its first
// delivery. The pad (3 KiB below the caller's frame) asks for one doubling,
// no more.
const liveStackPad = 3 << 10

// GrowStack grows the calling goroutine's stack, if it must, to hold a
// liveStackPad frame below the caller. A stream that joins a large fan-out
// calls it before its live loop: it then pays for its stack growth once,
// while it connects, instead of on its first delivery, where every
// subscriber of a topic that 10,000 clients just (re)joined would copy its
// stack inside the same fan-out (about 30 µs each here; see ADR 0011).
// Streams of small topics keep the smaller stack (idle memory).
//
//go:noinline
func GrowStack(i int) byte {
	var pad [liveStackPad]byte
	return pad[i%len(pad)]
}

// earlyStackPad is a frame that, called within the first few frames of a
// connection's goroutine (net/http's conn.serve and the handler that routes,
// about 1.5 KiB), needs more than its 4 KiB stack and less than 8 KiB: the
// runtime doubles the stack once, to the 8 KiB a live stream parks with and
// its deliveries fit in (ADR 0011).
const earlyStackPad = 4 << 10

// GrowStackEarly grows the calling goroutine's stack, if it must, to hold an
// earlyStackPad frame below the caller. The public handler calls it first
// for a stream request, before the router: the stack of a stream's goroutine
// reaches 8 KiB anyway by the time it goes live (the live loop's set-up, or
// GrowStack), and a stack copy costs per frame on it (each frame's pointers
// are adjusted), so copying it here, three frames deep, costs a fraction of
// the copy a dozen frames down, under gin and the connect (ADR 0011,
// Amendment).
//
//go:noinline
func GrowStackEarly(i int) byte {
	var pad [earlyStackPad]byte
	return pad[i%len(pad)]
}

// Stack is the goroutine stack f panicked on.
func (p *FreshStackPanic) Stack() []byte { return p.stack }
