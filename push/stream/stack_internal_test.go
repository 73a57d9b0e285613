package stream

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
)

// catch runs f and returns what it panicked with (nil when it returned).
func catch(f func()) (v any) {
	defer func() { v = recover() }()
	f()
	return nil
}

func TestOnFreshStackRunsOnAnotherGoroutineAndReturns(t *testing.T) {
	depth := 0
	var deep func(n int) int
	deep = func(n int) int { // ~64 KiB of frames: grows the helper's stack, not ours
		var pad [256]byte
		pad[n%256] = 1
		if n == 0 {
			return int(pad[0])
		}
		return deep(n-1) + int(pad[n%256])
	}
	if v := catch(func() { OnFreshStack(func() { depth = deep(256) }) }); v != nil {
		t.Fatalf("panicked: %v", v)
	}
	if depth != 257 {
		t.Fatalf("f did not run to completion: %d, want 257", depth)
	}
}

func TestOnFreshStackRaisesPanicsInTheCaller(t *testing.T) {
	cause := fmt.Errorf("wrapped: %w", io.ErrUnexpectedEOF)
	v := catch(func() { OnFreshStack(func() { panic(cause) }) })
	fp, ok := v.(*FreshStackPanic)
	if !ok {
		t.Fatalf("panic value %T %v, want *FreshStackPanic", v, v)
	}
	if !errors.Is(fp, io.ErrUnexpectedEOF) {
		t.Fatalf("the carried error is not reachable through errors.Is: %v", fp)
	}
	if fp.String() != cause.Error() {
		t.Fatalf("String() = %q, want the panic value's text %q", fp.String(), cause.Error())
	}
	if !strings.Contains(string(fp.stack), "TestOnFreshStackRaisesPanicsInTheCaller") {
		t.Fatalf("the carried stack is not the panicking goroutine's:\n%s", fp.stack)
	}

	if v := catch(func() { OnFreshStack(func() { panic("boom") }) }); fmt.Sprint(v) != "boom" {
		t.Fatalf("string panic came back as %v", v)
	}
	// net/http aborts a response on this exact value: it must pass as is.
	if v := catch(func() { OnFreshStack(func() { panic(http.ErrAbortHandler) }) }); v != http.ErrAbortHandler {
		t.Fatalf("ErrAbortHandler came back as %T %v", v, v)
	}
}
