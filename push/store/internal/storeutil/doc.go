// Package storeutil holds the small checks and helpers both push.Store
// implementations share, so that they accept and reject exactly the same
// input.
//
// Concurrency: stateless; every function is safe for concurrent use.
package storeutil
