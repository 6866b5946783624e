package collective

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/ringtrain/ringtrain/ring"
)

const (
	kindAllReduce byte = iota
	kindBroadcast
	kindAllGather
)

// AllReduce reduces buf across all members with op, in place: afterwards
// every member holds the same result. It uses the group's wire dtype
// (Config.Wire).
func (g *Group) AllReduce(ctx context.Context, buf []float32, op Op) error {
	return g.AllReduceWire(ctx, buf, op, g.cfg.Wire)
}

// AllReduceWire is AllReduce with wire dtype wire for this call (see
// DType for how 16-bit wire types compute and their error bound). Every
// member must pass the same wire dtype.
func (g *Group) AllReduceWire(ctx context.Context, buf []float32, op Op, wire DType) error {
	k := g.parts(len(buf), wire)
	return g.allReduceParts(ctx, g.nextSeqs(k), k, buf, op, wire)
}

// parts is how many parts an all-reduce of n elements over wire runs in
// (Config.Lanes): each part gets at least one chunk per member.
func (g *Group) parts(n int, wire DType) int {
	k := g.cfg.Lanes
	if k <= 1 || g.Size() < 2 || !wire.valid() || n < k*g.Size()*g.chunk(wire) {
		return 1
	}
	return k
}

// allReduceParts runs an all-reduce of buf as k parts with operation
// numbers seq..seq+k-1 at once. A part that fails cancels the others, and
// the error is the first failed part's.
func (g *Group) allReduceParts(ctx context.Context, seq uint64, k int, buf []float32, op Op, wire DType) error {
	if k == 1 {
		return g.allReduce(ctx, seq, buf, op, wire)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errs := make([]error, k)
	var wg sync.WaitGroup
	n := len(buf)
	for i := range k {
		part := buf[i*n/k : (i+1)*n/k]
		wg.Go(func() {
			if errs[i] = g.allReduce(ctx, seq+uint64(i), part, op, wire); errs[i] != nil {
				cancel()
			}
		})
	}
	wg.Wait()
	var first error
	for _, err := range errs {
		// A part cancelled by another's failure is not the cause.
		if err != nil && (first == nil || errors.Is(first, context.Canceled) && !errors.Is(err, context.Canceled)) {
			first = err
		}
	}
	if first != nil {
		return fmt.Errorf("collective: all-reduce in %d parts (ops %d..%d): %w", k, seq, seq+uint64(k)-1, first)
	}
	return nil
}

func (g *Group) allReduce(ctx context.Context, seq uint64, buf []float32, op Op, wire DType) error {
	if op < Sum || op > Min {
		return g.reject(ctx, "all-reduce", seq, fmt.Errorf("unknown reduction %v", op))
	}
	if !wire.valid() {
		return g.reject(ctx, "all-reduce", seq, fmt.Errorf("unknown wire dtype %v", wire))
	}
	n, size, rank := len(buf), g.Size(), g.rank
	s := g.schedule(schedKey{kind: kindAllReduce, wire: wire, n: n}, func() *ring.Schedule {
		return ring.AllReduce(rank, size, n, g.chunk(wire))
	})
	name := "all-reduce " + op.String()
	if wire != Float32 {
		name += " over " + wire.String()
	}
	return g.run(ctx, name, seq, buf, s, op, wire)
}

// Handle is an asynchronous operation in flight.
type Handle struct {
	done chan struct{}
	err  error
}

// Wait blocks until the operation is done or ctx ends. A ctx ending does not
// stop the operation, which still ends by its own deadline.
func (h *Handle) Wait(ctx context.Context) error {
	select {
	case <-h.done:
		return h.err
	case <-ctx.Done():
		return fmt.Errorf("collective: waiting for an asynchronous all-reduce: %w", ctx.Err())
	}
}

// Done is closed when the operation has finished.
func (h *Handle) Done() <-chan struct{} { return h.done }

// AllReduceAsync starts an all-reduce of buf and returns at once. The
// operation takes its place in the group's order at the call, so several
// can be in flight (one per gradient bucket, say); buf must not be touched
// until Wait returns. ctx bounds the operation itself.
func (g *Group) AllReduceAsync(ctx context.Context, buf []float32, op Op) *Handle {
	return g.AllReduceWireAsync(ctx, buf, op, g.cfg.Wire)
}

// AllReduceWireAsync is AllReduceAsync with wire dtype wire for this call.
func (g *Group) AllReduceWireAsync(ctx context.Context, buf []float32, op Op, wire DType) *Handle {
	k := g.parts(len(buf), wire)
	seq := g.nextSeqs(k)
	h := &Handle{done: make(chan struct{})}
	go func() {
		defer close(h.done)
		h.err = g.allReduceParts(ctx, seq, k, buf, op, wire)
	}()
	return h
}

// Broadcast copies root's buf into every member's buf.
func (g *Group) Broadcast(ctx context.Context, buf []float32, root int) error {
	seq := g.nextSeq()
	if root < 0 || root >= g.Size() {
		return g.reject(ctx, "broadcast", seq, fmt.Errorf("root %d out of range", root))
	}
	n, size, rank := len(buf), g.Size(), g.rank
	s := g.schedule(schedKey{kind: kindBroadcast, n: n, root: root}, func() *ring.Schedule {
		return ring.Broadcast(rank, size, root, n, g.chunk(Float32))
	})
	return g.run(ctx, fmt.Sprintf("broadcast from rank %d", root), seq, buf, s, -1, Float32)
}

// AllGather concatenates every member's send, in rank order, into recv,
// which must hold Size()·len(send) elements.
func (g *Group) AllGather(ctx context.Context, send, recv []float32) error {
	seq := g.nextSeq()
	n, size, rank := len(send), g.Size(), g.rank
	if len(recv) != size*n {
		return g.reject(ctx, "all-gather", seq, fmt.Errorf("receive buffer holds %d elements, want %d·%d", len(recv), size, n))
	}
	copy(recv[rank*n:], send)
	s := g.schedule(schedKey{kind: kindAllGather, n: n}, func() *ring.Schedule {
		return ring.AllGather(rank, size, n, g.chunk(Float32))
	})
	return g.run(ctx, "all-gather", seq, recv, s, -1, Float32)
}

// Barrier returns once every member has entered it.
func (g *Group) Barrier(ctx context.Context) error {
	// An all-gather of one value per rank: a rank's value reaches everyone
	// only after its owner entered the barrier.
	recv := make([]float32, g.Size())
	return g.AllGather(ctx, []float32{float32(g.rank)}, recv)
}
