package main

import (
	"runtime/debug"
	"strings"
)

// defaultGCPercent is the garbage collector's target a node runs with when
// the operator sets no GOGC (ADR 0036). At Go's default of 100 the heap
// grows to twice the live heap before a cycle, and a node's RSS follows
// that goal: with 10,000 streams the live heap is ~210 MB and the publish
// path's garbage reaches the goal within seconds, so the node held ~100
// MiB more than the same streams need. At 70 the goal is 1.7× the live
// heap: default:topics10k's RSS growth 536–541 → 470–475 MiB (1.26–1.28 →
// 1.05–1.07× the floor's) with no measurable CPU cost on that load
// (docs/benchmarks.md, "Quiet-machine measurements, session 14").
const defaultGCPercent = 70

// applyGCPercent sets the process's GC target to defaultGCPercent unless
// the environment sets GOGC (then the runtime has already applied the
// operator's value, "off" included). It reports the percentage it set, 0
// when it left the operator's.
func applyGCPercent(environ []string) int {
	for _, kv := range environ {
		if v, ok := strings.CutPrefix(kv, "GOGC="); ok && v != "" {
			return 0
		}
	}
	debug.SetGCPercent(defaultGCPercent)
	return defaultGCPercent
}
