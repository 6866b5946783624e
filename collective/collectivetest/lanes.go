package collectivetest

import (
	"context"
	"errors"
	"fmt"
	"math"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ringtrain/ringtrain/collective"
	"github.com/ringtrain/ringtrain/transport/transporttest"
)

// laneChunk is the chunk size of the lanes cases: 64 float32 elements.
const laneChunk = 256

// laneGroups builds one group per endpoint with Config.Lanes = lanes.
func (c *Cluster) laneGroups(t testing.TB, lanes int) []*collective.Group {
	t.Helper()
	c.epoch++
	gs := make([]*collective.Group, len(c.Endpoints))
	errs := make([]error, len(c.Endpoints))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for i, e := range c.Endpoints {
		wg.Go(func() {
			gs[i], errs[i] = collective.New(ctx, collective.Config{Endpoint: e, Members: c.IDs, Epoch: c.epoch,
				ChunkBytes: laneChunk, Timeout: time.Minute, Lanes: lanes})
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	return gs
}

// testLanes: all-reduces split into Config.Lanes parts give the exact
// results, bitwise equal on every rank, below, at and above the split
// threshold, over float32 and bf16, blocking and asynchronous, and
// operations after them still match on every member.
func testLanes(t *testing.T, f transporttest.Factory, o Options) {
	for _, n := range o.peerCounts() {
		if n < 2 || n > 5 {
			continue
		}
		c := NewCluster(t, f, n)
		for _, k := range []int{2, 3} {
			gs := c.laneGroups(t, k)
			threshold := k * n * laneChunk / 4
			for _, count := range []int{threshold - 1, threshold, threshold + 1, 10007} {
				for _, op := range []collective.Op{collective.Sum, collective.Avg, collective.Max, collective.Min} {
					t.Run(fmt.Sprintf("lanes=%d/peers=%d/count=%d/%v", k, n, count, op), func(t *testing.T) {
						checkAllReduce(t, gs, count, op)
					})
				}
				t.Run(fmt.Sprintf("lanes=%d/peers=%d/count=%d/bf16", k, n, count), func(t *testing.T) {
					checkWire(t, gs, collective.BFloat16, collective.Sum, count)
				})
			}
			t.Run(fmt.Sprintf("lanes=%d/peers=%d/async", k, n), func(t *testing.T) {
				checkLanesAsync(t, gs, threshold)
			})
		}
	}
}

// checkLanesAsync has split and whole all-reduces in flight at once, then
// a broadcast, whose operation number must match on every member.
func checkLanesAsync(t *testing.T, gs []*collective.Group, threshold int) {
	n := len(gs)
	sizes := []int{threshold * 3, 7, threshold, threshold - 1, 5000, 1}
	ctx := ctxT(t, 2*time.Minute)
	bufs := make([][][]float32, n)
	bcast := make([][]float32, n)
	mustAll(t, Parallel(gs, func(r int, g *collective.Group) error {
		hs := make([]*collective.Handle, len(sizes))
		bufs[r] = make([][]float32, len(sizes))
		for k, sz := range sizes {
			b := make([]float32, sz)
			for i := range b {
				b[i] = Value(r, i)
			}
			bufs[r][k] = b
			hs[k] = g.AllReduceAsync(ctx, b, collective.Sum)
		}
		for k := len(hs) - 1; k >= 0; k-- {
			if err := hs[k].Wait(ctx); err != nil {
				return fmt.Errorf("async op %d: %w", k, err)
			}
		}
		bcast[r] = []float32{float32(r), float32(r)}
		return g.Broadcast(ctx, bcast[r], n-1)
	}))
	for k, sz := range sizes {
		for i := range sz {
			want := Expected(collective.Sum, n, i)
			for r := range n {
				if got := bufs[r][k][i]; math.Float32bits(got) != math.Float32bits(want) {
					t.Fatalf("op %d: rank %d element %d = %v, want %v", k, r, i, got, want)
				}
			}
		}
	}
	for r := range n {
		if bcast[r][0] != float32(n-1) {
			t.Fatalf("rank %d: broadcast after the split ops gave %v, want %d", r, bcast[r], n-1)
		}
	}
}

// testLanesAbort: when a member vanishes during a split all-reduce, every
// other member fails every part and names the lost peer, without waiting
// for its deadline.
func testLanesAbort(t *testing.T, f transporttest.Factory, o Options) {
	n := min(4, o.maxPeers())
	if n < 3 {
		t.Skip("needs 3 peers")
	}
	before := runtime.NumGoroutine()
	func() {
		c := NewCluster(t, f, n)
		gs := c.laneGroups(t, 3)
		victim := 1
		ctx := ctxT(t, 20*time.Second)
		started := make(chan struct{})
		var once sync.Once
		errs := Parallel(gs, func(r int, g *collective.Group) error {
			if r == victim {
				<-started
				return c.Endpoints[r].Close()
			}
			h := g.AllReduceAsync(ctx, make([]float32, 1<<20), collective.Sum)
			once.Do(func() { close(started) })
			return h.Wait(ctx)
		})
		for r, err := range errs {
			if r == victim {
				continue
			}
			switch {
			case err == nil:
				t.Fatalf("rank %d: split all-reduce succeeded without rank %d", r, victim)
			case errors.Is(err, context.DeadlineExceeded):
				t.Errorf("rank %d waited for its deadline: %v", r, err)
			case !strings.Contains(err.Error(), "in 3 parts"):
				t.Errorf("rank %d: error does not say the all-reduce ran in parts: %v", r, err)
			}
		}
		for _, e := range c.Endpoints {
			e.Close()
		}
	}()
	CheckNoLeak(t, before)
}
