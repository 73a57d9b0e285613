package server

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"unsafe"
)

// liveDepth is a call chain of n frames of about 200 bytes each: the depth
// a live stream's goroutine reaches under the router (gin, the handler, the
// live loop, a delivery down to the write), as a probe.
//
//go:noinline
func liveDepth(n int) int {
	var pad [160]byte
	pad[n%len(pad)] = byte(n)
	if n == 0 {
		return int(pad[0])
	}
	return liveDepth(n-1) + int(pad[n%len(pad)])
}

// stackMoved serves a GET of path through h on a new goroutine (as net/http
// serves a connection) whose handler, standing for the router and a live
// stream, calls liveDepth; it reports whether the handler's stack was
// copied meanwhile (a local's address changed).
func stackMoved(wrap func(http.Handler) http.Handler, path string) bool {
	var moved bool
	inner := http.HandlerFunc(func(http.ResponseWriter, *http.Request) {
		var x byte
		before := uintptr(unsafe.Pointer(&x))
		liveDepth(20)
		moved = uintptr(unsafe.Pointer(&x)) != before
	})
	h := wrap(inner)
	w, r := httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, path, nil)
	done := make(chan struct{})
	go func() {
		defer close(done)
		h.ServeHTTP(w, r)
	}()
	<-done
	return moved
}

// A stream request's goroutine grows its stack before routing, a few frames
// deep where a copy is cheap, so that nothing under the router (the connect,
// the live loop, a delivery) copies it again a dozen frames down (ADR 0011,
// Amendment). Other requests reach the router with the stack they came with.
func TestStreamRequestsGrowTheirStackBeforeRouting(t *testing.T) {
	bare := func(h http.Handler) http.Handler { return h }
	early := func(h http.Handler) http.Handler { return streamStacks{h} }
	if !stackMoved(bare, streamPath) {
		t.Skip("a new goroutine's stack already holds the probe: no copy to observe")
	}
	if stackMoved(early, streamPath) {
		t.Fatal("GET " + streamPath + ": the stack was copied under the router, want it grown before")
	}
	if !stackMoved(early, "/v1/topics/t/events") {
		t.Fatal("GET /v1/topics/t/events: the stack was grown before routing, want only stream requests' grown")
	}
}
