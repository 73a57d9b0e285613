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

// chain is a call chain of n frames of about 160 bytes each, the shape of a
// connect phase (auth, admission, the store client, the writer down to the
// system call): many small frames, which is what makes each stack copy
// expensive (every frame is adjusted on a copy).
//
//go:noinline
func chain(n int) int {
	var pad [128]byte
	pad[n%len(pad)] = byte(n)
	if n == 0 {
		return int(pad[0])
	}
	return chain(n-1) + int(pad[n%len(pad)])
}

// BenchmarkOnFreshStack is the connect phase's goroutine: one OnFreshStack
// whose f reaches depth frames (×~160 B) down, as Node.Open does.
func BenchmarkOnFreshStack(b *testing.B) {
	for _, depth := range []int{16, 48, 80} {
		b.Run(fmt.Sprintf("depth=%d", depth), func(b *testing.B) {
			b.ReportAllocs()
			for range b.N {
				OnFreshStack(func() { chain(depth) })
			}
		})
	}
}
