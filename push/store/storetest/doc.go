// Package storetest is the conformance suite of the push.Store contract.
// Every Store implementation runs it from its own tests:
//
//	func TestConformance(t *testing.T) {
//		storetest.Run(t, func(t *testing.T, cfg storetest.Config) push.Store {
//			s := memstore.New(memstore.Config{Retention: cfg.Retention, IdempotencyWindow: cfg.IdempotencyWindow})
//			t.Cleanup(func() { s.Close() })
//			return s
//		})
//	}
//
// The suite checks what every caller of push.Store relies on: contiguous
// offsets from 1, atomic in-order batches, gap-free and duplicate-free
// offsets under concurrent appends, idempotency keys and their window, Info
// and Read semantics, retention by length and by age, Listener delivery and
// Close. It needs nothing but the Store: backend-specific invariants (Redis
// restarts, failover) are tested next to each implementation.
//
// Concurrency: subtests do not run in parallel with each other; each asks
// the factory for a fresh store and uses its own topic names.
package storetest
