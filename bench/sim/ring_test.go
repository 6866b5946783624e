package sim

import (
	"errors"
	"math"
	"testing"
)

// unit is a network with a 1e9 B/s payload rate and nothing else.
func unit() Net {
	return Net{Link: Link{BitsPerSec: 8e9, Goodput: 1}, Ring: Ring{ChunkBytes: 1e6}}
}

func near(got, want float64) bool { return math.Abs(got-want) <= 1e-9*math.Max(1, math.Abs(want)) }

func TestRingBandwidthOptimal(t *testing.T) {
	// No alpha, latency or reduction cost: a ring moves 2(n-1)/n·S per peer.
	for _, tc := range []struct {
		name  string
		n     int
		bytes float64
		want  float64 // seconds
	}{
		{"1 peer", 1, 16e9, 0},
		{"2 peers is S/B", 2, 4e9, 4},
		{"4 peers", 4, 16e9, 24},
		{"8 peers", 8, 16e9, 28},
		{"16 peers", 16, 16e9, 30},
		{"uneven chunks", 3, 3.5e6, 2 * 2 * 3.5e6 / 3 / 1e9},
		{"empty", 4, 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ar, err := unit().AllReduce(tc.bytes, tc.n)
			if err != nil {
				t.Fatal(err)
			}
			if !near(ar.Sec, tc.want) {
				t.Fatalf("all-reduce %v s, want %v", ar.Sec, tc.want)
			}
			if !near(ar.BandwidthSec, tc.want) {
				t.Fatalf("bandwidth part %v s, want %v", ar.BandwidthSec, tc.want)
			}
		})
	}
}

func TestRingChunkCosts(t *testing.T) {
	const ms = 1e-3
	for _, tc := range []struct {
		name   string
		n      int
		bytes  float64
		alpha  float64
		lat    float64
		reduce float64
		want   float64
	}{
		// One chunk per segment: nothing pipelines, every step pays
		// alpha + 1 ms on the wire + latency, plus 1 ms of reduction during
		// reduce-scatter: 3·2.75 + 3·1.75 ms.
		{"one chunk per segment", 4, 4e6, 0.5 * ms, 0.25 * ms, 1e9, 13.5 * ms},
		// Four chunks per segment: the sender never waits, 6 steps·4 chunks·
		// (0.5+1) ms, then the last chunk's latency.
		{"pipelined", 4, 16e6, 0.5 * ms, 0.25 * ms, 1e10, 36.25 * ms},
		// Reduction slower than the wire (2 ms per chunk) paces reduce-scatter:
		// chunk k of step s+1 waits for its reduction. 2 peers, 2 chunks:
		// step 0 sends at 0,1 ms (arrive 1,2; reduced 3,5); all-gather sends
		// chunk 0 at 3 (until 4) and chunk 1 at 5 (until 6).
		{"reduce bound", 2, 4e6, 0, 0, 0.5e9, 6 * ms},
	} {
		t.Run(tc.name, func(t *testing.T) {
			net := unit()
			net.Ring.AlphaSec, net.Link.LatencySec, net.Ring.ReduceBytesPerSec = tc.alpha, tc.lat, tc.reduce
			ar, err := net.AllReduce(tc.bytes, tc.n)
			if err != nil {
				t.Fatal(err)
			}
			if !near(ar.Sec, tc.want) {
				t.Fatalf("all-reduce %v s, want %v", ar.Sec, tc.want)
			}
		})
	}
}

func TestRate(t *testing.T) {
	for _, tc := range []struct {
		name    string
		gbit    float64
		preset  string
		cores   float64
		streams float64
		duplex  bool
		want    float64
		limit   Limit
	}{
		{"25G link-bound", 25, "quic-loopback", 32, 1, true, 25e9 / 8 * DefaultGoodput, LimitLink},
		{"100G 32 cores: QUIC", 100, "quic-loopback", 32, 1, true, 32 / 3.75 * GiB, LimitCPU},
		{"100G 8 cores: QUIC", 100, "quic-loopback", 8, 1, true, 8 / 3.75 * GiB, LimitCPU},
		{"simplex halves the cost", 100, "quic-loopback", 8, 1, false, 2 * 8 / 3.75 * GiB, LimitCPU},
		{"8 streams share the cores", 25, "quic-loopback", 32, 8, true, 32 / 3.75 / 8 * GiB, LimitCPU},
		{"xeon plateau", 100, "quic-xeon", 32, 1, true, 830e6, LimitPlateau},
		{"tcp-tls", 100, "tcp-tls", 32, 1, true, 100e9 / 8 * DefaultGoodput, LimitLink},
		{"one tcp connection per neighbour", 100, "tcp", 32, 1, true, TCPConnBytesPerSec, LimitPlateau},
		{"tcp below its cap", 10, "tcp", 32, 1, true, 10e9 / 8 * DefaultGoodput, LimitLink},
		{"free", 400, "free", 1, 1, true, 400e9 / 8 * DefaultGoodput, LimitLink},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr, err := TransportPreset(tc.preset, tc.cores)
			if err != nil {
				t.Fatal(err)
			}
			net := Net{Link: Link{BitsPerSec: tc.gbit * 1e9}, Transport: tr}
			x, lim := net.rate(tc.streams, tc.duplex)
			if !near(x, tc.want) || lim != tc.limit {
				t.Fatalf("rate %v (%s), want %v (%s)", x, lim, tc.want, tc.limit)
			}
		})
	}
	if _, err := TransportPreset("carrier-pigeon", 1); !errors.Is(err, ErrConfig) {
		t.Fatalf("unknown preset: %v", err)
	}
}

func TestNetValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		mod  func(n *Net)
	}{
		{"no link", func(n *Net) { n.Link.BitsPerSec = 0 }},
		{"infinite link", func(n *Net) { n.Link.BitsPerSec = math.Inf(1) }},
		{"goodput above 1", func(n *Net) { n.Link.Goodput = 1.5 }},
		{"negative latency", func(n *Net) { n.Link.LatencySec = -1 }},
		{"cost without cores", func(n *Net) { n.Transport.CPUSecPerGiB = 4 }},
		{"fixed cores eat all", func(n *Net) { n.Transport = Transport{CPUSecPerGiB: 4, Cores: 1, FixedCores: 1} }},
		{"negative chunk", func(n *Net) { n.Ring.ChunkBytes = -1 }},
		{"nan alpha", func(n *Net) { n.Ring.AlphaSec = math.NaN() }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := unit()
			tc.mod(&n)
			if _, err := n.AllReduce(1e6, 4); !errors.Is(err, ErrConfig) {
				t.Fatalf("AllReduce = %v, want ErrConfig", err)
			}
		})
	}
	if _, err := unit().AllReduce(1e6, 0); !errors.Is(err, ErrConfig) {
		t.Fatalf("0 peers: %v", err)
	}
}
