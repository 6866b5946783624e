package sim_test

import (
	"context"
	"fmt"
	"math"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/ringtrain/ringtrain/bench/sim"
	"github.com/ringtrain/ringtrain/collective"
	"github.com/ringtrain/ringtrain/transport/mem"
)

// TestMatchesRingOnMem runs ringtrain's real ring all-reduce (collective over
// transport/mem with rate-limited, delayed links) in fake time, where
// computing costs nothing, and checks that the simulator, given the same
// rate, latency and chunk size and free reductions, predicts its duration to
// within a microsecond per chunk (fake-time rounding of each transfer).
func TestMatchesRingOnMem(t *testing.T) {
	for _, tc := range []struct {
		n      int
		floats int
		chunk  int // bytes
		rate   float64
		delay  time.Duration
	}{
		{2, 1 << 20, 256 << 10, 100e6, 0},
		{3, 3 << 18, 64 << 10, 50e6, time.Millisecond},
		{4, 1 << 20, 256 << 10, 100e6, 2 * time.Millisecond},
		{8, 1 << 20, 64 << 10, 200e6, 500 * time.Microsecond},
		{8, 1000, 256 << 10, 10e6, 5 * time.Millisecond}, // one short chunk per segment
	} {
		t.Run(fmt.Sprintf("n=%d/floats=%d/chunk=%d/delay=%v", tc.n, tc.floats, tc.chunk, tc.delay), func(t *testing.T) {
			var got time.Duration
			synctest.Test(t, func(t *testing.T) {
				got = runMemAllReduce(t, tc.n, tc.floats, tc.chunk, tc.rate, tc.delay)
			})
			net := sim.Net{Link: sim.Link{BitsPerSec: 8 * tc.rate, Goodput: 1, LatencySec: tc.delay.Seconds()},
				Ring: sim.Ring{ChunkBytes: float64(tc.chunk)}}
			ar, err := net.AllReduce(float64(4*tc.floats), tc.n)
			if err != nil {
				t.Fatal(err)
			}
			tol := 1e-6 * float64(ar.Steps*ar.Chunks)
			if math.Abs(got.Seconds()-ar.Sec) > tol {
				t.Fatalf("ring on mem took %v, simulator says %v s (tolerance %v s)", got, ar.Sec, tol)
			}
			t.Logf("measured %v, simulated %.6f s", got, ar.Sec)
		})
	}
}

// runMemAllReduce times one all-reduce of n peers on a fresh in-memory
// network whose every link has the given rate and delay.
func runMemAllReduce(t *testing.T, n, floats, chunk int, rate float64, delay time.Duration) time.Duration {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
	defer cancel()
	netw := mem.NewNetwork()
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("p%02d", i)
	}
	eps, err := netw.Endpoints(ids...)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		for _, e := range eps {
			e.Close()
		}
	}()
	for i := range ids {
		for j := i + 1; j < n; j++ {
			netw.SetLink(ids[i], ids[j], mem.Link{Rate: rate, Delay: delay})
		}
	}
	groups := make([]*collective.Group, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for r := range n {
		wg.Go(func() {
			groups[r], errs[r] = collective.New(ctx, collective.Config{Endpoint: eps[r], Members: ids, ChunkBytes: chunk})
		})
	}
	wg.Wait()
	for r, err := range errs {
		if err != nil {
			t.Fatalf("rank %d: %v", r, err)
		}
	}
	synctest.Wait()
	start := time.Now()
	for r := range n {
		wg.Go(func() {
			buf := make([]float32, floats)
			for i := range buf {
				buf[i] = float32(r + 1)
			}
			errs[r] = groups[r].AllReduce(ctx, buf, collective.Sum)
			if errs[r] == nil && buf[floats-1] != float32(n*(n+1)/2) {
				errs[r] = fmt.Errorf("sum %v, want %d", buf[floats-1], n*(n+1)/2)
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	for r, err := range errs {
		if err != nil {
			t.Fatalf("rank %d: %v", r, err)
		}
	}
	return elapsed
}
