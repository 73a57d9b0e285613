//go:build linux

package main

import "syscall"

// procAttr makes a node started by a test die with the test binary, so a
// killed or timed-out run (a long `make chaos`) leaves no node behind.
func procAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
