//go:build race

package quic

// raceEnabled: the race detector slows QUIC ~10x; big suites shrink.
const raceEnabled = true
