//go:build !linux

package redistest

import "syscall"

// sysProcAttr: only Linux has Pdeathsig; elsewhere tb.Cleanup is the only
// reaper.
func sysProcAttr() *syscall.SysProcAttr { return nil }
