//go:build race

package tcp

// raceEnabled: the race detector slows the suites ~10x; big ones shrink.
const raceEnabled = true
