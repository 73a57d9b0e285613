//go:build !race

package server

// raceEnabled: allocation counts are checked without the race detector.
const raceEnabled = false
