//go:build race

package redisstore

// raceEnabled: the race detector adds allocations of its own, so exact
// allocation counts are checked without it.
const raceEnabled = true
