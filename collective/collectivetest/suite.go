// Package collectivetest is the conformance suite of the collectives, run
// over any transport: every collective on 1..16 peers, many buffer and chunk
// sizes, exact integer-valued results (over every wire dtype), the stated
// error bound of 16-bit wire dtypes on random inputs, asynchronous operations in flight at
// once, all-reduces split into lanes (Config.Lanes), aborts, cancellation and
// goroutine hygiene. collective runs it over
// transport/mem, transport/quic over QUIC on 127.0.0.1.
package collectivetest

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/ringtrain/ringtrain/collective"
	"github.com/ringtrain/ringtrain/transport"
	"github.com/ringtrain/ringtrain/transport/transporttest"
)

// Options size the suite for a transport.
type Options struct {
	// MaxPeers is the largest ring tested (default 16).
	MaxPeers int
	// PeerCounts, if set, replaces 1..MaxPeers as the ring sizes tested.
	PeerCounts []int
	// Large adds the 2^20+3-element buffers.
	Large bool
}

func (o Options) peerCounts() []int {
	if len(o.PeerCounts) > 0 {
		return o.PeerCounts
	}
	m := o.MaxPeers
	if m <= 0 {
		m = 16
	}
	ns := make([]int, m)
	for i := range ns {
		ns[i] = i + 1
	}
	return ns
}

func (o Options) maxPeers() int {
	m := 0
	for _, n := range o.peerCounts() {
		m = max(m, n)
	}
	return m
}

// Run runs the whole suite.
func Run(t *testing.T, f transporttest.Factory, o Options) {
	t.Run("AllReduce", func(t *testing.T) { testAllReduce(t, f, o) })
	t.Run("AllReduceOps", func(t *testing.T) { testOps(t, f, o) })
	t.Run("Broadcast", func(t *testing.T) { testBroadcast(t, f, o) })
	t.Run("AllGather", func(t *testing.T) { testAllGather(t, f, o) })
	t.Run("Barrier", func(t *testing.T) { testBarrier(t, f, o) })
	t.Run("AsyncInFlight", func(t *testing.T) { testAsync(t, f, o) })
	t.Run("PropertyNaiveSum", func(t *testing.T) { testProperty(t, f, o) })
	t.Run("AbortOnPeerLoss", func(t *testing.T) { testAbort(t, f, o) })
	t.Run("Cancel", func(t *testing.T) { testCancel(t, f, o) })
	t.Run("BadArguments", func(t *testing.T) { testBadArguments(t, f, o) })
	t.Run("WireExact", func(t *testing.T) { testWireExact(t, f, o) })
	t.Run("WireErrorBound", func(t *testing.T) { testWireBound(t, f, o) })
	t.Run("Lanes", func(t *testing.T) { testLanes(t, f, o) })
	t.Run("LanesAbort", func(t *testing.T) { testLanesAbort(t, f, o) })
}

// Cluster is a set of endpoints and, per epoch, their groups.
type Cluster struct {
	IDs       []string
	Endpoints []transport.Endpoint
	epoch     uint64
}

// NewCluster makes n endpoints with the factory.
func NewCluster(t testing.TB, f transporttest.Factory, n int) *Cluster {
	ids := transporttest.IDs(n)
	return &Cluster{IDs: ids, Endpoints: f(t, ids)}
}

// Groups builds one group per endpoint for a new epoch, all with the given
// chunk size.
func (c *Cluster) Groups(t testing.TB, chunkBytes int) []*collective.Group {
	t.Helper()
	c.epoch++
	gs := make([]*collective.Group, len(c.Endpoints))
	errs := make([]error, len(c.Endpoints))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for i, e := range c.Endpoints {
		wg.Go(func() {
			gs[i], errs[i] = collective.New(ctx, collective.Config{Endpoint: e, Members: c.IDs, Epoch: c.epoch, ChunkBytes: chunkBytes, Timeout: time.Minute})
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

// Parallel runs fn once per rank concurrently and returns each rank's error.
func Parallel(gs []*collective.Group, fn func(rank int, g *collective.Group) error) []error {
	errs := make([]error, len(gs))
	var wg sync.WaitGroup
	for r, g := range gs {
		wg.Go(func() { errs[r] = fn(r, g) })
	}
	wg.Wait()
	return errs
}

func mustAll(t testing.TB, errs []error) {
	t.Helper()
	for r, err := range errs {
		if err != nil {
			t.Fatalf("rank %d: %v", r, err)
		}
	}
}

// Value is rank r's integer-valued input at index i: sums over 16 ranks
// stay far below 2^24, so float32 results are exact.
func Value(r, i int) float32 { return float32((i*7+r*13)%1001 - 500) }

func ctxT(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// counts returns the buffer sizes tested for an n-peer ring.
func counts(n int, large bool) []int {
	cs := []int{0, 1, n - 1, n, n + 1, 1000}
	if large {
		cs = append(cs, 1<<20+3)
	}
	seen := map[int]bool{}
	var out []int
	for _, c := range cs {
		if c >= 0 && !seen[c] {
			seen[c] = true
			out = append(out, c)
		}
	}
	return out
}

// chunkBytes: tiny (many chunks per segment) to larger than any buffer.
var chunkBytes = []int{4, 28, 16 << 10, 64 << 20}

// tooMany skips combinations whose message count would only slow the
// suite down without testing anything new (a 4-byte chunk on a 4 MiB buffer).
func tooMany(count, chunk int) bool { return count*4/chunk > 20000 }

// sweep calls f for every ring size, chunk size and buffer count tested,
// with the groups of that ring and chunk size.
func sweep(t *testing.T, fac transporttest.Factory, o Options, f func(n, chunk, count int, gs []*collective.Group)) {
	for _, n := range o.peerCounts() {
		c := NewCluster(t, fac, n)
		for _, cb := range chunkBytes {
			gs := c.Groups(t, cb)
			for _, count := range counts(n, o.Large) {
				if !tooMany(count, cb) {
					f(n, cb, count, gs)
				}
			}
		}
	}
}

func testAllReduce(t *testing.T, f transporttest.Factory, o Options) {
	sweep(t, f, o, func(n, cb, count int, gs []*collective.Group) {
		t.Run(fmt.Sprintf("peers=%d/chunk=%dB/count=%d", n, cb, count), func(t *testing.T) {
			checkAllReduce(t, gs, count, collective.Sum)
		})
	})
}

func checkAllReduce(t *testing.T, gs []*collective.Group, count int, op collective.Op) {
	t.Helper()
	n := len(gs)
	bufs := make([][]float32, n)
	for r := range bufs {
		bufs[r] = make([]float32, count)
		for i := range bufs[r] {
			bufs[r][i] = Value(r, i)
		}
	}
	ctx := ctxT(t, 2*time.Minute)
	mustAll(t, Parallel(gs, func(r int, g *collective.Group) error { return g.AllReduce(ctx, bufs[r], op) }))
	for i := range count {
		want := Expected(op, n, i)
		for r := range n {
			if bufs[r][i] != want {
				t.Fatalf("%v: rank %d element %d = %v, want %v", op, r, i, bufs[r][i], want)
			}
		}
	}
}

// Expected is the exact result of op over n ranks at index i.
func Expected(op collective.Op, n, i int) float32 {
	acc := Value(0, i)
	for r := 1; r < n; r++ {
		v := Value(r, i)
		switch op {
		case collective.Sum, collective.Avg:
			acc += v
		case collective.Max:
			acc = max(acc, v)
		case collective.Min:
			acc = min(acc, v)
		}
	}
	if op == collective.Avg {
		acc /= float32(n)
	}
	return acc
}

func testOps(t *testing.T, f transporttest.Factory, o Options) {
	for _, n := range o.peerCounts() {
		c := NewCluster(t, f, n)
		gs := c.Groups(t, 256)
		for _, op := range []collective.Op{collective.Avg, collective.Max, collective.Min} {
			for _, count := range []int{n + 1, 1000} {
				t.Run(fmt.Sprintf("%v/peers=%d/count=%d", op, n, count), func(t *testing.T) {
					checkAllReduce(t, gs, count, op)
				})
			}
		}
	}
}

func testBroadcast(t *testing.T, f transporttest.Factory, o Options) {
	sweep(t, f, o, func(n, cb, count int, gs []*collective.Group) {
		for _, root := range distinct(0, n-1, n/2) {
			t.Run(fmt.Sprintf("peers=%d/chunk=%dB/count=%d/root=%d", n, cb, count, root), func(t *testing.T) {
				bufs := make([][]float32, n)
				for r := range bufs {
					bufs[r] = make([]float32, count)
					for i := range bufs[r] {
						bufs[r][i] = -1
						if r == root {
							bufs[r][i] = Value(root, i)
						}
					}
				}
				ctx := ctxT(t, 2*time.Minute)
				mustAll(t, Parallel(gs, func(r int, g *collective.Group) error { return g.Broadcast(ctx, bufs[r], root) }))
				for r := range n {
					for i := range count {
						if bufs[r][i] != Value(root, i) {
							t.Fatalf("rank %d element %d = %v, want %v", r, i, bufs[r][i], Value(root, i))
						}
					}
				}
			})
		}
	})
}

func distinct(xs ...int) []int {
	var out []int
	for _, x := range xs {
		dup := false
		for _, y := range out {
			dup = dup || x == y
		}
		if !dup {
			out = append(out, x)
		}
	}
	return out
}

func testAllGather(t *testing.T, f transporttest.Factory, o Options) {
	per := []int{0, 1, 3, 1000}
	if o.Large {
		per = append(per, 1<<16+3)
	}
	for _, n := range o.peerCounts() {
		c := NewCluster(t, f, n)
		for _, cb := range chunkBytes {
			gs := c.Groups(t, cb)
			for _, m := range per {
				if tooMany(n*m, cb) {
					continue
				}
				t.Run(fmt.Sprintf("peers=%d/chunk=%dB/per-rank=%d", n, cb, m), func(t *testing.T) {
					recv := make([][]float32, n)
					ctx := ctxT(t, 2*time.Minute)
					mustAll(t, Parallel(gs, func(r int, g *collective.Group) error {
						send := make([]float32, m)
						for i := range send {
							send[i] = Value(r, i)
						}
						recv[r] = make([]float32, n*m)
						return g.AllGather(ctx, send, recv[r])
					}))
					for r := range n {
						for src := range n {
							for i := range m {
								if got := recv[r][src*m+i]; got != Value(src, i) {
									t.Fatalf("rank %d: block of rank %d element %d = %v, want %v", r, src, i, got, Value(src, i))
								}
							}
						}
					}
				})
			}
		}
	}
}

func testBarrier(t *testing.T, f transporttest.Factory, o Options) {
	for _, n := range o.peerCounts() {
		t.Run(fmt.Sprintf("peers=%d", n), func(t *testing.T) {
			c := NewCluster(t, f, n)
			gs := c.Groups(t, 0)
			ctx := ctxT(t, time.Minute)
			var mu sync.Mutex
			lastEntered := false
			errs := Parallel(gs, func(r int, g *collective.Group) error {
				if r == n-1 {
					time.Sleep(50 * time.Millisecond)
					mu.Lock()
					lastEntered = true
					mu.Unlock()
				}
				if err := g.Barrier(ctx); err != nil {
					return err
				}
				mu.Lock()
				defer mu.Unlock()
				if !lastEntered {
					return fmt.Errorf("rank %d left the barrier before rank %d entered it", r, n-1)
				}
				return nil
			})
			mustAll(t, errs)
		})
	}
}

// testAsync issues many asynchronous all-reduces of different sizes and ops
// before waiting for any, then waits in reverse order.
func testAsync(t *testing.T, f transporttest.Factory, o Options) {
	for _, n := range distinct(min(4, o.maxPeers()), o.maxPeers()) {
		t.Run(fmt.Sprintf("peers=%d", n), func(t *testing.T) {
			c := NewCluster(t, f, n)
			gs := c.Groups(t, 1<<10)
			sizes := []int{5000, 1, 0, 70000, 333, 12345, 2, 4096, 100000, 17, 999, 50000}
			ops := []collective.Op{collective.Sum, collective.Avg, collective.Max, collective.Min}
			ctx := ctxT(t, 2*time.Minute)
			bufs := make([][][]float32, n)
			mustAll(t, Parallel(gs, func(r int, g *collective.Group) error {
				hs := make([]*collective.Handle, len(sizes))
				bufs[r] = make([][]float32, len(sizes))
				for k, sz := range sizes {
					b := make([]float32, sz)
					for i := range b {
						b[i] = Value(r, i)
					}
					bufs[r][k] = b
					hs[k] = g.AllReduceAsync(ctx, b, ops[k%len(ops)])
				}
				for k := len(hs) - 1; k >= 0; k-- {
					if err := hs[k].Wait(ctx); err != nil {
						return fmt.Errorf("async op %d: %w", k, err)
					}
				}
				return nil
			}))
			for k, sz := range sizes {
				op := ops[k%len(ops)]
				for i := range sz {
					want := Expected(op, n, i)
					for r := range n {
						if got := bufs[r][k][i]; got != want {
							t.Fatalf("op %d (%v): rank %d element %d = %v, want %v", k, op, r, i, got, want)
						}
					}
				}
			}
		})
	}
}
