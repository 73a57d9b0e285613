package server

import (
	"fmt"
	"net/http"
	"runtime/debug"
)

// onFreshStack runs f on a new goroutine and waits for it, so that the deep
// call chains f makes grow that goroutine's stack, which is freed when it
// exits, instead of the caller's (see handleStream). A panic in f is
// raised again in the caller, with f's stack trace in its value, so the
// handler's recovery sees it as if f had run inline; http.ErrAbortHandler
// is raised again as is.
func onFreshStack(f func()) {
	var (
		failed = true
		val    any
		stack  []byte
	)
	done := make(chan struct{})
	go func() {
		defer close(done)
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
	panic(&freshStackPanic{val: val, stack: stack})
}

// freshStackPanic carries a panic from onFreshStack's goroutine.
type freshStackPanic struct {
	val   any
	stack []byte
}

// String is the panic value's text; the stack is logged apart (recover).
func (p *freshStackPanic) String() string { return fmt.Sprint(p.val) }

// Unwrap lets errors.Is and errors.As see an error the panic carried.
func (p *freshStackPanic) Unwrap() error {
	err, _ := p.val.(error)
	return err
}

func (p *freshStackPanic) Error() string { return p.String() }
