package ring

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/ringtrain/ringtrain/half"
	"github.com/ringtrain/ringtrain/transport"
	"github.com/ringtrain/ringtrain/transport/mem"
)

// copyCodec is a wire encoding with float32's own bytes, so that sums are
// exact while the executor takes the Wire path: each chunk in a buffer of
// its own, forwarded chunks held for the sender across the step boundary.
// Its fused hops leave a forwarded partial sum only in the wire bytes, as
// the 16-bit codecs' do, so a held chunk the sender lost would show.
var copyCodec = &Codec{
	Size:   4,
	Encode: func(dst []byte, src []float32) { copy(dst, Bytes(src)) },
	Decode: func(dst []float32, src []byte) { copy(Bytes(dst), src[:4*len(dst)]) },
	Round:  func([]float32) {},
	AddEncode: func(w []byte, acc []float32) {
		x := make([]float32, len(acc))
		copy(Bytes(x), w)
		Sum(x, acc)
		copy(w, Bytes(x))
	},
	AddRound: func(acc []float32, w []byte, div float32) {
		x := make([]float32, len(acc))
		copy(Bytes(x), w)
		for i := range acc {
			acc[i] = (acc[i] + x[i]) / div
		}
		copy(w, Bytes(acc))
	},
}

// TestRunWireAcrossBoundary: a ring all-reduce over transport/mem with a
// wire codec gives every rank the exact sum, with steps of fewer chunks
// than the executor may hold for its sender and of many more (the held
// chunks beyond heldLimit are parked in Buf or encoded from it instead).
func TestRunWireAcrossBoundary(t *testing.T) {
	cases := []struct {
		name            string
		size, n, chunk  int
		wantStepsChunks int
	}{
		{"3 ranks, 4 chunks a step", 3, 12, 1, 4},
		{"4 ranks, 40 chunks a step", 4, 160, 1, 40},
		{"2 ranks, one chunk a step", 2, 8, 4, 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := len(AllReduce(0, tc.size, tc.n, tc.chunk).Sends) / (2 * (tc.size - 1)); got != tc.wantStepsChunks {
				t.Fatalf("%d chunks a step, want %d", got, tc.wantStepsChunks)
			}
			bufs := make([][]float32, tc.size)
			for r := range bufs {
				bufs[r] = make([]float32, tc.n)
				for i := range bufs[r] {
					bufs[r][i] = float32(r + 1 + i%5)
				}
			}
			runAllReduce(t, bufs, tc.chunk, copyCodec, 1)
			for r := range tc.size {
				for i, v := range bufs[r] {
					want := float32(tc.size*(tc.size+1)/2 + tc.size*(i%5))
					if v != want {
						t.Fatalf("rank %d element %d = %v, want %v", r, i, v, want)
					}
				}
			}
		})
	}
}

// runAllReduce runs a ring all-reduce (Sum, or Avg when div > 1) of bufs,
// one per rank, over transport/mem with wire codec c and the fused hops.
func runAllReduce(t *testing.T, bufs [][]float32, chunk int, c *Codec, div float32) {
	t.Helper()
	size := len(bufs)
	ids := make([]string, size)
	for i := range ids {
		ids[i] = fmt.Sprintf("r%d", i)
	}
	eps, err := mem.NewNetwork().Endpoints(ids...)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	errs := make([]error, size)
	var wg sync.WaitGroup
	for r := range size {
		wg.Go(func() {
			next, err := eps[r].Conn(ctx, ids[(r+1)%size])
			if err != nil {
				errs[r] = err
				return
			}
			prev, err := eps[r].Conn(ctx, ids[(r+size-1)%size])
			if err != nil {
				errs[r] = err
				return
			}
			e := &Exec{
				Prev: prev, Next: next, Tag: transport.Tag{Epoch: 1, Op: 1}, Buf: bufs[r],
				Sched:      AllReduce(r, size, len(bufs[r]), chunk),
				Reduce:     Sum,
				SumDivisor: div,
				Scratch:    make([]float32, chunk),
				Wire:       c,
			}
			if div != 1 {
				e.Final = func(dst []float32) { Div(dst, div) }
			}
			errs[r] = Run(ctx, e)
		})
	}
	wg.Wait()
	for r, err := range errs {
		if err != nil {
			t.Fatalf("rank %d: %v", r, err)
		}
	}
}

// bf16Codec is collective's bfloat16 wire codec.
var bf16Codec = &Codec{Size: 2, Encode: half.EncodeBFloat16, Decode: half.DecodeBFloat16, Round: half.RoundBFloat16,
	AddEncode: half.AddEncodeBFloat16, AddRound: half.AddRoundBFloat16, Exact: half.EncodeExactBFloat16, Expand: half.ExpandBFloat16}

// TestRunWireParked: over bfloat16 with inputs that round, every rank ends
// with bitwise the values of the ring's order of operations done one by
// one (segment s starts at rank s, each later rank adds its input to the
// decoded partial sum and rounds it, the last one divides too), whether
// the executor holds a chunk's bytes for its sender, parks them in Buf or
// encodes them again: steps of fewer chunks than heldLimit, of more, and
// with a last chunk shorter than the rest.
func TestRunWireParked(t *testing.T) {
	cases := []struct {
		name           string
		size, n, chunk int
		div            float32
	}{
		{"2 ranks, 40 chunks a step, sum", 2, 2 * 40 * 16, 16, 1},
		{"4 ranks, 4 chunks a step, sum", 4, 4 * 4 * 16, 16, 1},
		{"4 ranks, 40 chunks a step, sum", 4, 4 * 40 * 16, 16, 1},
		{"4 ranks, 40 chunks a step, avg", 4, 4 * 40 * 16, 16, 4},
		{"3 ranks, 30 chunks a step and a short one, avg", 3, 3*30*24 + 7, 24, 3},
		{"5 ranks, 25 chunks a step, sum", 5, 5 * 25 * 9, 9, 1},
	}
	rng := rand.New(rand.NewPCG(7, 8))
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			in := make([][]float32, tc.size)
			bufs := make([][]float32, tc.size)
			for r := range in {
				in[r] = make([]float32, tc.n)
				for i := range in[r] {
					in[r][i] = float32(rng.NormFloat64())
				}
				bufs[r] = append([]float32(nil), in[r]...)
			}
			runAllReduce(t, bufs, tc.chunk, bf16Codec, tc.div)
			round := func(x float32) float32 { return half.FromBFloat16(half.BFloat16(x)) }
			for s := range tc.size {
				off, l := segment(s, tc.size, tc.n)
				for i := off; i < off+l; i++ {
					v := round(in[s][i])
					for k := 1; k < tc.size; k++ {
						v += in[(s+k)%tc.size][i]
						if k == tc.size-1 {
							v /= tc.div
						}
						v = round(v)
					}
					for r := range tc.size {
						if math.Float32bits(bufs[r][i]) != math.Float32bits(v) {
							t.Fatalf("rank %d element %d (segment %d) = %v, want %v", r, i, s, bufs[r][i], v)
						}
					}
				}
			}
		})
	}
}
