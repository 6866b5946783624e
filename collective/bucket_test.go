package collective_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/ringtrain/ringtrain/collective"
	"github.com/ringtrain/ringtrain/collective/collectivetest"
)

// mlpSegs is a model's parameter layout in backward (ready) order: the last
// layer's parameters, at the end of the arena, are ready first.
var mlpSegs = []collective.Segment{{Off: 234, Len: 10}, {Off: 200, Len: 34}, {Off: 0, Len: 200}}

func TestBucketPlan(t *testing.T) {
	cases := []struct {
		name  string
		arena int
		segs  []collective.Segment
		bytes int
		want  []collective.Bucket
	}{
		{"one bucket under the default cap", 244, mlpSegs, 0,
			[]collective.Bucket{{Off: 0, Len: 244, Segments: []int{0, 1, 2}}}},
		{"cap splits at a segment boundary", 244, mlpSegs, 4 * 44,
			[]collective.Bucket{{Off: 200, Len: 44, Segments: []int{0, 1}}, {Off: 0, Len: 200, Segments: []int{2}}}},
		{"cap one element short of two segments", 244, mlpSegs, 4*44 - 4,
			[]collective.Bucket{{Off: 234, Len: 10, Segments: []int{0}}, {Off: 200, Len: 34, Segments: []int{1}}, {Off: 0, Len: 200, Segments: []int{2}}}},
		{"segment over the cap gets its own bucket", 244, mlpSegs, 4,
			[]collective.Bucket{{Off: 234, Len: 10, Segments: []int{0}}, {Off: 200, Len: 34, Segments: []int{1}}, {Off: 0, Len: 200, Segments: []int{2}}}},
		{"forward order merges too", 30, []collective.Segment{{0, 10}, {10, 10}, {20, 10}}, 1 << 20,
			[]collective.Bucket{{Off: 0, Len: 30, Segments: []int{0, 1, 2}}}},
		{"a gap in the arena splits", 40, []collective.Segment{{30, 10}, {10, 10}, {0, 10}}, 1 << 20,
			[]collective.Bucket{{Off: 30, Len: 10, Segments: []int{0}}, {Off: 0, Len: 20, Segments: []int{1, 2}}}},
		{"not adjacent to the bucket in ready order splits", 30, []collective.Segment{{20, 10}, {0, 10}, {10, 10}}, 1 << 20,
			[]collective.Bucket{{Off: 20, Len: 10, Segments: []int{0}}, {Off: 0, Len: 20, Segments: []int{1, 2}}}},
		{"no segments, no buckets", 10, nil, 0, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b, err := collective.NewBucketer(make([]float32, c.arena), c.segs, collective.BucketConfig{BucketBytes: c.bytes})
			if err != nil {
				t.Fatal(err)
			}
			if got := b.Buckets(); !reflect.DeepEqual(got, c.want) {
				t.Fatalf("plan %+v, want %+v", got, c.want)
			}
		})
	}
}

func TestBucketerRejects(t *testing.T) {
	cases := []struct {
		name string
		segs []collective.Segment
		cfg  collective.BucketConfig
		want string
	}{
		{"overlap", []collective.Segment{{0, 10}, {5, 10}}, collective.BucketConfig{}, "overlap"},
		{"outside", []collective.Segment{{95, 10}}, collective.BucketConfig{}, "outside"},
		{"negative offset", []collective.Segment{{-1, 10}}, collective.BucketConfig{}, "outside"},
		{"empty", []collective.Segment{{0, 0}}, collective.BucketConfig{}, "empty"},
		{"negative cap", nil, collective.BucketConfig{BucketBytes: -1}, "negative"},
		{"bad op", nil, collective.BucketConfig{Op: 9}, "reduction"},
		{"bad wire", nil, collective.BucketConfig{Wire: 9}, "wire dtype"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := collective.NewBucketer(make([]float32, 100), c.segs, c.cfg)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want one mentioning %q", err, c.want)
			}
		})
	}
}

// layout makes segments of the given sizes laid out forward in the arena,
// listed in backward order.
func layout(sizes ...int) ([]collective.Segment, int) {
	var segs []collective.Segment
	off := 0
	for _, s := range sizes {
		segs = append(segs, collective.Segment{Off: off, Len: s})
		off += s
	}
	for i, j := 0, len(segs)-1; i < j; i, j = i+1, j-1 {
		segs[i], segs[j] = segs[j], segs[i]
	}
	return segs, off
}

// TestBucketedEqualsWholeAllReduce: a bucketed Sum of integer-valued
// arenas equals one all-reduce of the whole arena, bitwise, on every rank,
// for several plans, wire dtypes and per-rank orders of Ready calls.
func TestBucketedEqualsWholeAllReduce(t *testing.T) {
	segs, total := layout(3000, 17, 500, 1, 20000, 64, 7000)
	for _, n := range []int{1, 2, 3, 5} {
		c := collectivetest.NewCluster(t, memFactory, n)
		gs := c.Groups(t, 1<<10)
		for _, d := range collectivetest.WireDTypes {
			for _, bb := range []int{4, 4 * 600, 4 * 8000, 4 * total, 0} {
				t.Run(fmt.Sprintf("peers=%d/%v/bucket=%dB", n, d, bb), func(t *testing.T) {
					whole := make([][]float32, n)
					bucketed := make([][]float32, n)
					for r := range n {
						whole[r] = make([]float32, total)
						for i := range whole[r] {
							whole[r][i] = collectivetest.WireValue(r, i)
						}
						bucketed[r] = append([]float32(nil), whole[r]...)
					}
					ctx := ctxT(t)
					for r, err := range collectivetest.Parallel(gs, func(r int, g *collective.Group) error {
						if err := g.AllReduceWire(ctx, whole[r], collective.Sum, d); err != nil {
							return err
						}
						b, err := collective.NewBucketer(bucketed[r], segs, collective.BucketConfig{BucketBytes: bb, Op: collective.Sum, Wire: d})
						if err != nil {
							return err
						}
						round := b.Start(ctx, g)
						// Each rank reports its segments in its own order: launches
						// must still follow the plan.
						order := rand.New(rand.NewPCG(uint64(r), 7)).Perm(len(segs))
						for _, s := range order {
							if err := round.Ready(s); err != nil {
								return err
							}
						}
						return round.Wait(ctx)
					}) {
						if err != nil {
							t.Fatalf("rank %d: %v", r, err)
						}
					}
					for r := range n {
						for i := range total {
							if math.Float32bits(bucketed[r][i]) != math.Float32bits(whole[r][i]) {
								t.Fatalf("rank %d element %d: bucketed %v, whole-arena all-reduce %v", r, i, bucketed[r][i], whole[r][i])
							}
						}
					}
				})
			}
		}
	}
}

// TestBucketedReplicasIdentical: random float inputs, Avg over bf16 and
// fp32, buckets launched partly by Ready and partly by Wait: every rank
// ends with bitwise the same arena, and the elements outside every segment
// are untouched.
func TestBucketedReplicasIdentical(t *testing.T) {
	const n = 4
	segs := []collective.Segment{{900, 100}, {500, 400}, {10, 490}} // [0,10) is no segment
	c := collectivetest.NewCluster(t, memFactory, n)
	gs := c.Groups(t, 256)
	for _, d := range []collective.DType{collective.Float32, collective.BFloat16} {
		t.Run(d.String(), func(t *testing.T) {
			arenas := make([][]float32, n)
			for r := range arenas {
				rng := rand.New(rand.NewPCG(uint64(r), 1))
				arenas[r] = make([]float32, 1000)
				for i := range arenas[r] {
					arenas[r][i] = float32(rng.NormFloat64())
				}
			}
			before := make([][]float32, n)
			for r := range n {
				before[r] = append([]float32(nil), arenas[r][:10]...)
			}
			ctx := ctxT(t)
			mustAllRanks(t, collectivetest.Parallel(gs, func(r int, g *collective.Group) error {
				b, err := collective.NewBucketer(arenas[r], segs, collective.BucketConfig{BucketBytes: 4 * 400, Op: collective.Avg, Wire: d})
				if err != nil {
					return err
				}
				round := b.Start(ctx, g)
				if err := round.Ready(0); err != nil { // bucket 0 launches; 1 and 2 wait for Wait
					return err
				}
				return round.Wait(ctx)
			}))
			for r := 1; r < n; r++ {
				for i := range arenas[r] {
					if math.Float32bits(arenas[r][i]) != math.Float32bits(arenas[0][i]) && i >= 10 {
						t.Fatalf("rank %d element %d = %v, rank 0 %v", r, i, arenas[r][i], arenas[0][i])
					}
				}
			}
			for r := range n {
				if !reflect.DeepEqual(arenas[r][:10], before[r]) {
					t.Fatalf("rank %d: elements outside every segment changed", r)
				}
			}
		})
	}
}

func mustAllRanks(t *testing.T, errs []error) {
	t.Helper()
	for r, err := range errs {
		if err != nil {
			t.Fatalf("rank %d: %v", r, err)
		}
	}
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// TestRoundMisuse: wrong segment numbers and calls out of order are errors.
func TestRoundMisuse(t *testing.T) {
	c := collectivetest.NewCluster(t, memFactory, 1)
	g := c.Groups(t, 0)[0]
	b, err := collective.NewBucketer(make([]float32, 244), mlpSegs, collective.BucketConfig{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := ctxT(t)
	r := b.Start(ctx, g)
	for _, c := range []struct {
		name string
		call func() error
		want string
	}{
		{"first ready", func() error { return r.Ready(1) }, ""},
		{"twice", func() error { return r.Ready(1) }, "twice"},
		{"negative", func() error { return r.Ready(-1) }, "out of range"},
		{"too large", func() error { return r.Ready(3) }, "out of range"},
		{"wait", func() error { return r.Wait(ctx) }, ""},
		{"ready after wait", func() error { return r.Ready(0) }, "after Wait"},
		{"wait twice", func() error { return r.Wait(ctx) }, "twice"},
	} {
		err := c.call()
		if c.want == "" && err != nil || c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)) {
			t.Fatalf("%s: error %v, want %q", c.name, err, c.want)
		}
	}
}

// TestRoundPeerLost: a member that never takes part makes the others' Wait
// fail, within the round's deadline, with an error that names the bucket,
// the epoch and the operation.
func TestRoundPeerLost(t *testing.T) {
	const n = 3
	c := collectivetest.NewCluster(t, memFactory, n)
	gs := c.Groups(t, 64)
	segs, total := layout(100, 100, 100)
	c.Endpoints[2].Close()
	start := time.Now()
	errs := collectivetest.Parallel(gs[:2], func(r int, g *collective.Group) error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		b, err := collective.NewBucketer(make([]float32, total), segs, collective.BucketConfig{BucketBytes: 400})
		if err != nil {
			return err
		}
		round := b.Start(ctx, g)
		for s := range segs {
			if err := round.Ready(s); err != nil {
				return err
			}
		}
		return round.Wait(ctx)
	})
	for r, err := range errs {
		if err == nil {
			t.Fatalf("rank %d: no error with a member gone", r)
		}
		for _, want := range []string{"bucket ", "epoch 1", "all-reduce sum"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("rank %d: error %q does not name %q", r, err, want)
			}
		}
	}
	if took := time.Since(start); took > 8*time.Second {
		t.Fatalf("took %v: the failure did not end the round early", took)
	}
}

// TestRoundWaitDeadline: Wait's own ctx ending aborts the round; Wait
// returns a deadline error and only after the operations stopped.
func TestRoundWaitDeadline(t *testing.T) {
	c := collectivetest.NewCluster(t, memFactory, 2)
	gs := c.Groups(t, 0)
	b, err := collective.NewBucketer(make([]float32, 300), []collective.Segment{{0, 300}}, collective.BucketConfig{})
	if err != nil {
		t.Fatal(err)
	}
	round := b.Start(context.Background(), gs[0]) // rank 1 never joins
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	err = round.Wait(ctx)
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "epoch 1") {
		t.Fatalf("Wait: %v, want a deadline error naming the epoch", err)
	}
}
