package collectivetest

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/ringtrain/ringtrain/collective"
	"github.com/ringtrain/ringtrain/transport"
	"github.com/ringtrain/ringtrain/transport/transporttest"
)

// testProperty compares random all-reduces with a naive sum.
func testProperty(t *testing.T, f transporttest.Factory, o Options) {
	rng := rand.New(rand.NewPCG(1, 2))
	maxN := o.maxPeers()
	clusters := map[int]*Cluster{}
	for trial := range 30 {
		n := 1 + rng.IntN(maxN)
		count := rng.IntN(5000)
		chunk := 4 * (1 + rng.IntN(3000))
		c := clusters[n]
		if c == nil {
			c = NewCluster(t, f, n)
			clusters[n] = c
		}
		gs := c.Groups(t, chunk)
		in := make([][]float32, n)
		want := make([]float64, count)
		for r := range in {
			in[r] = make([]float32, count)
			for i := range in[r] {
				v := float32(rng.IntN(2001) - 1000)
				in[r][i] = v
				want[i] += float64(v)
			}
		}
		ctx := ctxT(t, time.Minute)
		mustAll(t, Parallel(gs, func(r int, g *collective.Group) error { return g.AllReduce(ctx, in[r], collective.Sum) }))
		for r := range n {
			for i := range count {
				if float64(in[r][i]) != want[i] {
					t.Fatalf("trial %d (peers=%d count=%d chunk=%dB): rank %d element %d = %v, naive sum %v",
						trial, n, count, chunk, r, i, in[r][i], want[i])
				}
			}
		}
	}
}

// testAbort closes one peer in the middle of an all-reduce: every other peer
// must return, well within its deadline, an error naming the lost peer, and
// no goroutine may be left behind.
func testAbort(t *testing.T, f transporttest.Factory, o Options) {
	n := min(5, o.maxPeers())
	if n < 3 {
		t.Skip("needs 3 peers")
	}
	before := runtime.NumGoroutine()
	func() {
		c := NewCluster(t, f, n)
		gs := c.Groups(t, 64<<10)
		victim := 2
		const deadline = 20 * time.Second
		ctx := ctxT(t, deadline)
		start := time.Now()
		errs := Parallel(gs, func(r int, g *collective.Group) error {
			if r == victim {
				// The others are in the middle of the operation, having
				// exchanged part of their data, when the victim vanishes.
				time.Sleep(50 * time.Millisecond)
				return c.Endpoints[r].Close()
			}
			return g.AllReduce(ctx, make([]float32, 1<<20), collective.Sum)
		})
		elapsed := time.Since(start)
		for r, err := range errs {
			if r == victim {
				continue
			}
			if err == nil {
				t.Fatalf("rank %d: all-reduce succeeded without rank %d", r, victim)
			}
			if errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("rank %d waited for its deadline instead of seeing the loss: %v", r, err)
			}
			if !strings.Contains(err.Error(), c.IDs[victim]) {
				t.Errorf("rank %d: error does not name lost peer %s: %v", r, c.IDs[victim], err)
			}
		}
		t.Logf("all survivors failed within %v; e.g. rank 0: %v", elapsed, errs[0])
		for _, e := range c.Endpoints {
			e.Close()
		}
	}()
	CheckNoLeak(t, before)
}

// CheckNoLeak waits up to 10 s for the goroutine count to fall back to
// before, then fails with a dump.
func CheckNoLeak(t testing.TB, before int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		now := runtime.NumGoroutine()
		if now <= before {
			return
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			buf = buf[:runtime.Stack(buf, true)]
			t.Fatalf("%d goroutines left behind (before %d, now %d):\n%s", now-before, before, now, buf)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// testCancel: a peer never joins the operation; cancellation and deadlines
// still end it promptly on the others.
func testCancel(t *testing.T, f transporttest.Factory, o Options) {
	n := min(3, o.maxPeers())
	if n < 2 {
		t.Skip("needs 2 peers")
	}
	cases := []struct {
		name string
		ctx  func() (context.Context, context.CancelFunc)
		want error
	}{
		{"cancel", func() (context.Context, context.CancelFunc) {
			ctx, cancel := context.WithCancel(context.Background())
			time.AfterFunc(100*time.Millisecond, cancel)
			return ctx, cancel
		}, context.Canceled},
		{"deadline", func() (context.Context, context.CancelFunc) {
			return context.WithTimeout(context.Background(), 100*time.Millisecond)
		}, context.DeadlineExceeded},
		{"group timeout", func() (context.Context, context.CancelFunc) {
			return context.WithCancel(context.Background()) // no deadline: Config.Timeout applies
		}, context.DeadlineExceeded},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := NewCluster(t, f, n)
			gs := make([]*collective.Group, n)
			for i, e := range c.Endpoints {
				var err error
				gs[i], err = collective.New(context.Background(), collective.Config{Endpoint: e, Members: c.IDs, Epoch: 1, Timeout: 150 * time.Millisecond})
				if err != nil {
					t.Fatal(err)
				}
			}
			ctx, cancel := tc.ctx()
			defer cancel()
			start := time.Now()
			errs := Parallel(gs[:n-1], func(r int, g *collective.Group) error {
				return g.AllReduce(ctx, make([]float32, 100), collective.Sum)
			})
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("returned after %v", d)
			}
			for r, err := range errs {
				// A rank may see its neighbour's abort (which carries the
				// same cause as text) before its own context ends.
				aborted := errors.Is(err, transport.ErrAborted) && strings.Contains(err.Error(), tc.want.Error())
				if !errors.Is(err, tc.want) && !aborted {
					t.Errorf("rank %d: got %v, want %v", r, err, tc.want)
				}
				if err != nil && !strings.Contains(err.Error(), fmt.Sprintf("epoch %d", 1)) {
					t.Errorf("rank %d: error does not name the epoch: %v", r, err)
				}
			}
		})
	}
}

// testBadArguments: one member calls with arguments it must reject; the
// others learn at once through the abort, not at their deadline.
func testBadArguments(t *testing.T, f transporttest.Factory, o Options) {
	n := min(3, o.maxPeers())
	if n < 2 {
		t.Skip("needs 2 peers")
	}
	c := NewCluster(t, f, n)
	gs := c.Groups(t, 0)
	ctx := ctxT(t, 30*time.Second)
	start := time.Now()
	errs := Parallel(gs, func(r int, g *collective.Group) error {
		root := 0
		if r == 1 {
			root = n + 5 // out of range
		}
		return g.Broadcast(ctx, make([]float32, 10), root)
	})
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("the others waited %v", d)
	}
	for r, err := range errs {
		if r == 0 && err == nil {
			continue // the root only sends: it may finish before the abort arrives
		}
		if err == nil || !strings.Contains(err.Error(), "out of range") {
			t.Errorf("rank %d: %v, want an error carrying rank 1's reason", r, err)
		}
	}
}
