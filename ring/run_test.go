package ring

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

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
// chunks beyond heldLimit are encoded from Buf instead).
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
			ids := make([]string, tc.size)
			for i := range ids {
				ids[i] = fmt.Sprintf("r%d", i)
			}
			eps, err := mem.NewNetwork().Endpoints(ids...)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			bufs := make([][]float32, tc.size)
			errs := make([]error, tc.size)
			var wg sync.WaitGroup
			for r := range tc.size {
				bufs[r] = make([]float32, tc.n)
				for i := range bufs[r] {
					bufs[r][i] = float32(r + 1 + i%5)
				}
				wg.Go(func() {
					next, err := eps[r].Conn(ctx, ids[(r+1)%tc.size])
					if err != nil {
						errs[r] = err
						return
					}
					prev, err := eps[r].Conn(ctx, ids[(r+tc.size-1)%tc.size])
					if err != nil {
						errs[r] = err
						return
					}
					errs[r] = Run(ctx, &Exec{
						Prev: prev, Next: next, Tag: transport.Tag{Epoch: 1, Op: 1}, Buf: bufs[r],
						Sched:      AllReduce(r, tc.size, tc.n, tc.chunk),
						Reduce:     Sum,
						SumDivisor: 1,
						Scratch:    make([]float32, tc.chunk),
						Wire:       copyCodec,
					})
				})
			}
			wg.Wait()
			for r, err := range errs {
				if err != nil {
					t.Fatalf("rank %d: %v", r, err)
				}
			}
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
