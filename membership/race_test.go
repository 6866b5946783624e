//go:build race

package membership_test

// raceEnabled: the race detector slows every goroutine several times; tests
// that start many members scale down.
const raceEnabled = true
