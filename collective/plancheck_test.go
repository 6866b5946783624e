package collective_test

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ringtrain/ringtrain/collective"
	"github.com/ringtrain/ringtrain/collective/collectivetest"
)

// TestRoundPlanMismatch: when one member plans its buckets differently
// (another bucket size, wire type, op or parameter order), every member's
// round fails at once with ErrPlanMismatch naming its own plan, instead
// of reducing mismatched buckets into each other's.
func TestRoundPlanMismatch(t *testing.T) {
	segs, total := layout(100, 100, 100)
	swapped := []collective.Segment{segs[1], segs[0], segs[2]}
	same := collective.BucketConfig{BucketBytes: 400, Op: collective.Sum}
	cases := []struct {
		name  string
		segs  []collective.Segment // member 2's
		cfg   collective.BucketConfig
		fails bool
	}{
		{"same plan", segs, same, false},
		{"bucket size", segs, collective.BucketConfig{BucketBytes: 800, Op: collective.Sum}, true},
		{"wire type", segs, collective.BucketConfig{BucketBytes: 400, Op: collective.Sum, Wire: collective.BFloat16}, true},
		{"op", segs, collective.BucketConfig{BucketBytes: 400, Op: collective.Avg}, true},
		{"parameter order", swapped, same, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := collectivetest.NewCluster(t, memFactory, 3)
			gs := c.Groups(t, 64)
			start := time.Now()
			errs := collectivetest.Parallel(gs, func(r int, g *collective.Group) error {
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				defer cancel()
				s, cfg := segs, same
				if r == 2 {
					s, cfg = tc.segs, tc.cfg
				}
				b, err := collective.NewBucketer(make([]float32, total), s, cfg)
				if err != nil {
					return err
				}
				round := b.Start(ctx, g)
				for i := range s {
					if err := round.Ready(i); err != nil {
						return errors.Join(err, round.Wait(ctx))
					}
				}
				return round.Wait(ctx)
			})
			for r, err := range errs {
				switch {
				case !tc.fails && err != nil:
					t.Fatalf("rank %d: %v", r, err)
				case tc.fails && (!errors.Is(err, collective.ErrPlanMismatch) || !strings.Contains(err.Error(), "this member's plan") || !strings.Contains(err.Error(), "epoch 1")):
					t.Fatalf("rank %d: %v, want ErrPlanMismatch naming its plan and the epoch", r, err)
				}
			}
			if took := time.Since(start); took > 10*time.Second {
				t.Fatalf("took %v: the mismatch was not found at once", took)
			}
		})
	}
}

// counting counts the all-reduces a Round issues.
type counting struct {
	*collective.Group
	n atomic.Int32
}

func (c *counting) AllReduceWireAsync(ctx context.Context, buf []float32, op collective.Op, wire collective.DType) *collective.Handle {
	c.n.Add(1)
	return c.Group.AllReduceWireAsync(ctx, buf, op, wire)
}

// TestPlanCheckedOncePerGroup: the plan check is one operation, on a
// Reducer's first round only.
func TestPlanCheckedOncePerGroup(t *testing.T) {
	c := collectivetest.NewCluster(t, memFactory, 1)
	g := &counting{Group: c.Groups(t, 0)[0]}
	segs, total := layout(100, 100, 100)
	b, err := collective.NewBucketer(make([]float32, total), segs, collective.BucketConfig{BucketBytes: 400})
	if err != nil {
		t.Fatal(err)
	}
	ctx := ctxT(t)
	for round, want := range []int32{3 + 1, 3, 3} {
		g.n.Store(0)
		r := b.Start(ctx, g)
		for i := range segs {
			if err := r.Ready(i); err != nil {
				t.Fatal(err)
			}
		}
		if err := r.Wait(ctx); err != nil {
			t.Fatal(err)
		}
		if got := g.n.Load(); got != want {
			t.Fatalf("round %d issued %d all-reduces, want %d", round, got, want)
		}
	}
}
