// Package resilience is Herald's overload protection: the four layers of
// docs/adr/0005-protection-layers.md, built on alibaba/sentinel-golang
// where sentinel fits and on plain counters where it does not. It returns
// decisions; it knows nothing of HTTP. The server turns a *Blocked into a
// response.
//
// # Layers
//
//  1. Ingress (Guards.Publish): publish rate per tenant key and per topic
//     (sentinel hotspot QPS rules, checked by sentinel's hotspot slot with
//     a traffic-shaping controller of this package: sentinel's token bucket
//     on an allocation-free bounded store, ADR 0033; reject, or throttle
//     with bounded queueing). A refusal maps to 429 with Retry-After.
//  2. Admission (Guards.Admit): which new streams a node accepts — a cap on
//     open streams per node and per client IP (exact counters), process CPU
//     and host load with sentinel's BBR condition on handshakes in flight,
//     and the node's connect rate with a warm-up from cold (sentinel flow
//     rule). A refusal maps to 503 + Retry-After for API clients.
//  3. Replay (Guards.Replay): a FIFO cap on concurrent replays with a
//     bounded wait, so a reconnect storm's store reads cannot starve live
//     fan-out. (Layer 3's per-connection queues and slow-consumer cut-off
//     live in the hub.)
//  4. Dependency (Guards.Breaker(target).Do): one circuit breaker per Redis
//     target with sentinel's error-ratio and slow-call-ratio rules, fail
//     fast while open, half-open probes after the retry timeout.
//
// Every refusal, trip, half-open and recovery is counted (Guards.Counters)
// and reported to Options.OnEvent; breaker state changes are logged once
// per change.
//
// # Browser-safe shedding is the server's job
//
// A browser EventSource treats a 503 or any non-200 answer as fatal and
// stops reconnecting. For EventSource requests the server must therefore
// turn an admission or replay refusal into a close before headers, or a
// 200 with a `retry:` field (Blocked.Jittered gives a spread-out value)
// followed by a close. Blocked.RetryAfterSeconds is for Retry-After
// headers to API clients.
//
// # Contract
//
// Every admitted unit must be released: Pass.Done after a publish,
// Stream.Live when a stream's replay is over and Stream.Done when it ends,
// the release func of Replay. All of them are idempotent and safe from any
// goroutine. Guards, Breaker and the values they return are safe for
// concurrent use. Reload swaps rules live and keeps statistics; Close
// removes every rule and detaches this Guards from sentinel — calls after
// Close pass unguarded, so that shutdown never wedges on a guard.
//
// Breaker.Do counts an error as a failure unless the caller cancelled its
// context or Options.IsFailure says otherwise (use it for "not found").
// Calls that block by design (XREAD BLOCK, SUBSCRIBE) do not belong in Do.
//
// # Global state
//
// Sentinel is process-global: one configuration, one logger, rule managers
// keyed by resource name, statistics per resource name, one list of breaker
// listeners. This package is the only one in Herald that touches it, and it
// keeps one registry (sentinel.go) — the package's only mutable
// package-level state — that initialises sentinel once per process with
// api.InitWithConfig (no config file, no log or metric files, no HTTP
// exporter, no background goroutines), routes sentinel's log lines to the
// oldest live Guards' logger, and dispatches breaker state changes from
// one process-wide listener to the owning Breaker by resource name.
//
// Each Guards namespaces its sentinel resources with Options.Name plus a
// random suffix and loads rules only with LoadRulesOfResource, so several
// Guards in one process (tests, in-process clusters) never share rules or
// statistics, and closing one never disturbs another. Sentinel cannot
// delete a resource's statistics: a closed Guards leaves a few kilobytes of
// counters behind, and so does each breaker target, so keep targets to the
// configured dependencies.
//
// The publish path's entries (Publish, PublishN, Breaker.Do) run slot
// chains of their own, built per Guards, with only the slots of the rules
// their resources carry (ADR 0028); the admission layer's entries run
// sentinel's global chain.
//
// # Goroutines
//
// The package starts none. With AdmissionConfig.MaxCPU or MaxLoad above
// zero, sentinel's CPU and/or load collector is started: one goroutine
// each, at most once per process, running until the process exits
// (sentinel has no way to stop them). Leave both at zero in tests that
// check for goroutine leaks.
package resilience
