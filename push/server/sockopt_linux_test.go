package server_test

import "syscall"

// mobileMSS sets a real network's segment size (1200 bytes) on a socket
// before it connects: over loopback's 64 KiB segments, a reader with a
// tiny receive buffer can never offer a window worth a segment, and the
// sender stalls once it has filled it.
func mobileMSS(fd uintptr) error {
	return syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_MAXSEG, 1200)
}
