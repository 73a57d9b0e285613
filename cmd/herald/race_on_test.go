//go:build race

package main

// raceEnabled: the race detector changes what the heap and stacks hold;
// memory pins are not checked under it.
const raceEnabled = true
