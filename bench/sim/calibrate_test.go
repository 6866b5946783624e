package sim

import (
	"errors"
	"math"
	"testing"
)

func TestFitRingAlpha(t *testing.T) {
	// model generates points from the ring model itself at a known α and
	// rate, which the fit must recover.
	model := func(net Net, alpha, x float64, bytes float64, peers int) RingPoint {
		net.Ring.AlphaSec = alpha
		return RingPoint{Bytes: bytes, Peers: peers, Sec: net.ringAllReduce(bytes, peers, x, LimitLink).Sec}
	}
	oneChunk := Net{Ring: Ring{ChunkBytes: 256 << 10}}
	withReduce := Net{Ring: Ring{ChunkBytes: 256 << 10, ReduceBytesPerSec: 15.4e9}, Link: Link{LatencySec: 20e-6}}
	pipelined := Net{Ring: Ring{ChunkBytes: 4096, ReduceBytesPerSec: 1e8}}
	var gen []RingPoint
	for _, n := range []int{2, 3, 5, 8} {
		for _, b := range []float64{256, 4096, 65536, 524288} {
			gen = append(gen, model(pipelined, 80e-6, 1.5e6, b, n))
		}
	}
	for _, tc := range []struct {
		name      string
		net       Net
		pts       []RingPoint
		alpha, bw float64
	}{
		// Two peers, one chunk per segment, nothing else: T = 2α + S/x, so
		// 1000 B in 1.2 ms and 101,000 B in 101.2 ms are α = 100 µs at 1 MB/s.
		{"two peers by hand", oneChunk, []RingPoint{{1000, 2, 0.0012}, {101000, 2, 0.1012}}, 100e-6, 1e6},
		// The same sizes 0.1 ms faster: α would be negative, so it is 0
		// and the rate alone is fitted to T = S/x in relative least
		// squares: x = Σ(S/t)²/Σ(S/t), with S/t = 1000/0.0009 and 1e6.
		{"alpha clamped at zero", oneChunk, []RingPoint{{1000, 2, 0.0009}, {101000, 2, 0.101}}, 0,
			(1000/0.0009*1000/0.0009 + 1e12) / (1000/0.0009 + 1e6)},
		{"latency and reduction", withReduce, []RingPoint{model(withReduce, 124e-6, 1.495e6, 820, 8),
			model(withReduce, 124e-6, 1.495e6, 51200, 4), model(withReduce, 124e-6, 1.495e6, 524288, 8)}, 124e-6, 1.495e6},
		{"pipelined chunks, 4 ring sizes", pipelined, gen, 80e-6, 1.5e6},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, err := FitRingAlpha(tc.pts, tc.net)
			if err != nil {
				t.Fatal(err)
			}
			if math.Abs(f.AlphaSec-tc.alpha) > 1e-12 || math.Abs(f.BytesPerSec/tc.bw-1) > 1e-9 || f.Points != len(tc.pts) {
				t.Fatalf("fit %+v, want α %v s, %v B/s", f, tc.alpha, tc.bw)
			}
			if tc.alpha > 0 && f.MaxRelErr > 1e-9 {
				t.Fatalf("fit %+v leaves error on points of the model", f)
			}
		})
	}
}

func TestFitRingAlphaErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		pts  []RingPoint
	}{
		{"no points", nil},
		{"one size", []RingPoint{{1000, 2, 0.001}, {1000, 4, 0.002}}},
		{"one peer", []RingPoint{{1000, 1, 0.001}, {2000, 2, 0.002}}},
		{"zero time", []RingPoint{{1000, 2, 0}, {2000, 2, 0.002}}},
		{"infinite size", []RingPoint{{math.Inf(1), 2, 1}, {2000, 2, 0.002}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := FitRingAlpha(tc.pts, Net{}); !errors.Is(err, ErrConfig) {
				t.Fatalf("FitRingAlpha = %v, want ErrConfig", err)
			}
		})
	}
}
