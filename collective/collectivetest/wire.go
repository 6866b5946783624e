package collectivetest

import (
	"fmt"
	"math"
	"math/big"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/ringtrain/ringtrain/collective"
	"github.com/ringtrain/ringtrain/half"
	"github.com/ringtrain/ringtrain/transport/transporttest"
)

// WireDTypes are the wire dtypes the suite runs.
var WireDTypes = []collective.DType{collective.Float32, collective.BFloat16, collective.Float16}

// WireValue is rank r's input at index i for exact tests over any wire
// dtype: an integer in [−15, 15], so every partial sum over up to 16 ranks
// stays within ±240, which bf16 (8 significant bits: integers up to 256)
// and fp16 represent exactly.
func WireValue(r, i int) float32 { return float32((i*7+r*13)%31 - 15) }

// RoundTo is x rounded to wire dtype d and widened back.
func RoundTo(d collective.DType, x float32) float32 {
	switch d {
	case collective.BFloat16:
		return half.FromBFloat16(half.BFloat16(x))
	case collective.Float16:
		return half.FromFloat16(half.Float16(x))
	}
	return x
}

// WireExpected is the exact result of op over n ranks of WireValue at i,
// over wire dtype d: sums are exact, Avg divides the exact sum once in
// float32 and rounds once to d, as DType documents.
func WireExpected(d collective.DType, op collective.Op, n, i int) float32 {
	acc := WireValue(0, i)
	for r := 1; r < n; r++ {
		v := WireValue(r, i)
		switch op {
		case collective.Sum, collective.Avg:
			acc += v
		case collective.Max:
			acc = max(acc, v)
		case collective.Min:
			acc = min(acc, v)
		}
	}
	if op == collective.Avg && n > 1 {
		return RoundTo(d, acc/float32(n))
	}
	return acc
}

// testWireExact runs every wire dtype and op over every ring size with
// exactly representable inputs: results must be exact and bitwise equal on
// every rank.
func testWireExact(t *testing.T, f transporttest.Factory, o Options) {
	ops := []collective.Op{collective.Sum, collective.Avg, collective.Max, collective.Min}
	// The wire path differs from fp32 only in what each hop encodes and
	// decodes, so a subset of the ring sizes (the edges, odd, a power of
	// two) covers it; the fp32 suite runs them all. The 6-byte chunk (one
	// element per chunk and a remainder) runs on the small rings only.
	for _, n := range o.peerCounts() {
		if !slices.Contains([]int{1, 2, 3, 5, 8, 16}, n) && n != o.maxPeers() {
			continue
		}
		c := NewCluster(t, f, n)
		for _, cb := range []int{6, 1 << 10, 64 << 20} {
			if cb == 6 && n > 3 {
				continue
			}
			gs := c.Groups(t, cb)
			for _, d := range WireDTypes {
				for _, count := range counts(n, o.Large) {
					if tooMany(count, cb) {
						continue
					}
					for k, op := range ops {
						if count > 1000 && k > 0 {
							continue // the large buffer with Sum only
						}
						t.Run(fmt.Sprintf("%v/%v/peers=%d/chunk=%dB/count=%d", d, op, n, cb, count), func(t *testing.T) {
							checkWire(t, gs, d, op, count)
						})
					}
				}
			}
		}
	}
}

func checkWire(t *testing.T, gs []*collective.Group, d collective.DType, op collective.Op, count int) {
	t.Helper()
	n := len(gs)
	bufs := make([][]float32, n)
	for r := range bufs {
		bufs[r] = make([]float32, count)
		for i := range bufs[r] {
			bufs[r][i] = WireValue(r, i)
		}
	}
	ctx := ctxT(t, 2*time.Minute)
	mustAll(t, Parallel(gs, func(r int, g *collective.Group) error { return g.AllReduceWire(ctx, bufs[r], op, d) }))
	for i := range count {
		want := WireExpected(d, op, n, i)
		for r := range n {
			if math.Float32bits(bufs[r][i]) != math.Float32bits(want) {
				t.Fatalf("rank %d element %d = %v, want %v", r, i, bufs[r][i], want)
			}
		}
	}
}

// testWireBound runs random (not representable) inputs through Sum and Avg
// over each 16-bit wire dtype and checks, per element, the error bound
// DType states, that every rank holds bitwise the same result and that
// the result is a value of the wire type (so it was rounded to it, and the
// rounding travelled in the all-gather).
func testWireBound(t *testing.T, f transporttest.Factory, o Options) {
	rng := rand.New(rand.NewPCG(13, 2))
	for _, n := range distinct(min(2, o.maxPeers()), min(3, o.maxPeers()), min(7, o.maxPeers()), o.maxPeers()) {
		c := NewCluster(t, f, n)
		gs := c.Groups(t, 1<<10)
		for _, d := range WireDTypes {
			for _, op := range []collective.Op{collective.Sum, collective.Avg} {
				for _, signs := range []string{"positive", "mixed"} {
					t.Run(fmt.Sprintf("%v/%v/%s/peers=%d", d, op, signs, n), func(t *testing.T) {
						checkBound(t, rng, gs, d, op, signs == "mixed")
					})
				}
			}
		}
	}
}

func checkBound(t *testing.T, rng *rand.Rand, gs []*collective.Group, d collective.DType, op collective.Op, mixed bool) {
	const count = 3000
	n := len(gs)
	in := make([][]float32, n)
	for r := range in {
		in[r] = make([]float32, count)
		for i := range in[r] {
			// Magnitudes over four decades; fp16 partial sums stay far
			// below its overflow at 65520.
			v := float32(math.Pow(10, rng.Float64()*4-2))
			if mixed && rng.IntN(2) == 0 {
				v = -v
			}
			in[r][i] = v
		}
	}
	exact := make([]float64, count) // the exact sum, rounded once to float64
	absSum := make([]float64, count)
	for i := range count {
		var s, a big.Float
		s.SetPrec(200)
		a.SetPrec(200)
		for r := range n {
			s.Add(&s, big.NewFloat(float64(in[r][i])))
			a.Add(&a, big.NewFloat(math.Abs(float64(in[r][i]))))
		}
		exact[i], _ = s.Float64()
		absSum[i], _ = a.Float64()
	}
	bufs := make([][]float32, n)
	for r := range bufs {
		bufs[r] = append([]float32(nil), in[r]...)
	}
	ctx := ctxT(t, 2*time.Minute)
	mustAll(t, Parallel(gs, func(r int, g *collective.Group) error { return g.AllReduceWire(ctx, bufs[r], op, d) }))
	gamma, tau := d.ErrorBound(n)
	worst, changed := 0.0, 0
	for i := range count {
		got := bufs[0][i]
		for r := 1; r < n; r++ {
			if math.Float32bits(bufs[r][i]) != math.Float32bits(got) {
				t.Fatalf("element %d: rank %d holds %v, rank 0 %v", i, r, bufs[r][i], got)
			}
		}
		if n > 1 && RoundTo(d, got) != got {
			t.Fatalf("element %d = %v (%#08x) is not a %v value", i, got, math.Float32bits(got), d)
		}
		want, scale := exact[i], absSum[i]
		if op == collective.Avg {
			want /= float64(n)
			scale /= float64(n)
		}
		errAbs := math.Abs(float64(got) - want)
		// The exact reference itself is rounded once to float64: allow
		// that ulp (2^-53 relative), negligible against γ.
		if limit := gamma*scale + tau + math.Abs(want)*0x1p-52; errAbs > limit {
			t.Fatalf("element %d: %v over %d ranks = %v, exact %v: error %.3g > bound %.3g (γ=%.3g, Σ|x|=%.3g)",
				i, op, n, got, want, errAbs, limit, gamma, scale)
		}
		if scale > 0 {
			worst = max(worst, errAbs/scale)
		}
		if float64(got) != want {
			changed++
		}
	}
	t.Logf("%v %v n=%d: worst |err|/Σ|x| = %.3g, bound γ = %.3g (%.0f%% used); %d of %d elements inexact",
		d, op, n, worst, gamma, 100*worst/max(gamma, 1e-300), changed, count)
	if n > 1 && d != collective.Float32 && changed < count/2 {
		t.Fatalf("only %d of %d random results differ from the exact sum: was the wire really %v?", changed, count, d)
	}
}
