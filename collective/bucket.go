package collective

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
)

// DefaultBucketBytes is the bucket size of a zero BucketConfig.BucketBytes
// (float32 bytes of gradient per bucket): 25 MiB, PyTorch DDP's default
// bucket_cap_mb (Horovod fuses up to 64 MiB), chosen by measurement
// because no smaller size was faster anywhere we could measure, and
// smaller buckets were slower where the CPU, not the link, is the limit.
// Median step in ms of the real trainer (`go run ./bench train …`, 4
// peers, batch 32 each, 3 runs of every size in turn, on a 2-core machine
// shared with other jobs; MLP 0.94 MB and CNN 1.72 MB of gradients, so
// 1 MiB makes 1 and 3 buckets, 4 and 25 MiB one bucket each):
//
//	links                     model   off  256KiB   1MiB   4MiB  25MiB
//	in memory (--transport mem) MLP  11.1     9.9   10.0   13.4    9.6
//	                            CNN 106.8   166.8  167.8  106.3  109.1
//	QUIC, loopback              MLP  40.6    45.7   38.2      -   38.4
//	                            CNN 138.0   156.0  140.0      -  126.7
//	QUIC, 50 Mbit/s tbf         MLP 264.2   257.1  253.4  259.7  258.4
//	                            CNN 679.1   638.0  544.1  541.7  609.5
//	  (a second run)            CNN 572.7   566.0  555.0      -  571.6
//	  bf16 on the wire          MLP 133.5       -  132.7      -  130.3
//	                            CNN 352.6       -  313.4      -  323.8
//
// Several buckets lose on a CPU-bound host: a bucket reduced while
// backward runs wakes its ring goroutines once per chunk, and they queue
// between the goroutines of gonum's parallel GEMM, so backward waits for
// its slowest tile (CNN in memory: 60 ms more per step with less CPU
// used). On the shaped link an early bucket can hide only the backward
// that follows it, ≤ 10% of a step these models spend mostly on the
// link, inside the run-to-run spread (the two CNN rows; 4 and 25 MiB, the
// same plan, differ as much). With bf16 halving the link time the CNN's
// wait after backward fell from 229 to 181 ms at 1 MiB, so a small model
// on a slow link can gain from --bucket-bytes 1MiB; a default must also
// serve large models on many peers, where 1 MiB buckets cut into
// segments of a few KiB per ring step. The simulator
// gives ResNet-50, Inception v3 and VGG16 on 8–100 H200s at 25 Gbit/s
// the same images/s within 2% for 1, 4, 25 and 64 MiB (transport CPU is
// their limit there), so the larger size costs nothing for large models
// and saves operations.
const DefaultBucketBytes = 25 << 20

// Segment is one tensor's elements in the arena: arena[Off:Off+Len].
type Segment struct{ Off, Len int }

// Bucket is one all-reduce of a bucketed reduction: arena[Off:Off+Len],
// the union of Segments (indices into the Bucketer's segments, in ready
// order).
type Bucket struct {
	Off, Len int
	Segments []int
}

// BucketConfig configures a Bucketer.
type BucketConfig struct {
	// BucketBytes caps a bucket's size in float32 bytes (whatever the wire
	// dtype); a segment larger than the cap gets a bucket of its own.
	// 0: DefaultBucketBytes.
	BucketBytes int
	Op          Op
	Wire        DType
}

// Bucketer reduces one flat float32 arena as a fixed plan of buckets, each
// an asynchronous all-reduce launched as soon as all of its segments are
// ready (as DDP's and Horovod's gradient fusion do), so that communication
// overlaps the computation that produces the later segments.
//
// Invariants:
//   - The plan depends only on the segments and the configuration, so every
//     member with the same model plans the same buckets.
//   - A Round launches buckets strictly in plan order, whatever order its
//     segments become ready in, so every member issues the same operations
//     in the same order.
//   - After Round.Wait returns, no operation of the round touches the arena.
//   - The first round on each Reducer (epoch) checks that every member
//     plans alike: before its buckets it all-reduces (Max) this plan's ID
//     and its negation, so every member learns the largest and smallest ID
//     and all of them fail the round with ErrPlanMismatch when those
//     differ, rather than reduce mismatched buckets into each other's.
//
// Its plan is immutable; a Bucketer may start any number of (sequential)
// rounds.
type Bucketer struct {
	arena   []float32
	segs    []Segment
	buckets []Bucket
	of      []int // bucket of each segment
	cfg     BucketConfig
	id      uint32 // planID: what members must agree on

	mu      sync.Mutex
	checked Reducer // the last Reducer whose first round checked the plan
}

// ErrPlanMismatch is wrapped by a round's error when the members' plans
// differ (another model layout, bucket size, op or wire type): a
// configuration error that retrying cannot fix.
var ErrPlanMismatch = errors.New("collective: members plan different bucketed all-reduces")

// planID is a 24-bit FNV-1a hash of what decides the operations a round
// issues (the arena's length, the segments in ready order, the bucket
// size, op and wire type): small enough to be exact in a float32.
func planID(n int, segs []Segment, cfg BucketConfig) uint32 {
	h := uint32(2166136261)
	mix := func(v int) {
		for range 8 {
			h ^= uint32(v & 0xff)
			h *= 16777619
			v >>= 8
		}
	}
	mix(n)
	mix(len(segs))
	for _, s := range segs {
		mix(s.Off)
		mix(s.Len)
	}
	mix(cfg.BucketBytes)
	mix(int(cfg.Op))
	mix(int(cfg.Wire))
	return h>>8 ^ h&0xff // fold to 24 bits
}

// NewBucketer plans the buckets of arena. segs are given in the order
// backward makes them ready; a bucket takes consecutive segments that are
// adjacent in the arena (the union stays one contiguous range), up to
// BucketBytes. Segments must be non-empty, inside the arena and disjoint;
// the arena elements no segment covers are never reduced.
func NewBucketer(arena []float32, segs []Segment, cfg BucketConfig) (*Bucketer, error) {
	if cfg.BucketBytes == 0 {
		cfg.BucketBytes = DefaultBucketBytes
	}
	switch {
	case cfg.BucketBytes < 0:
		return nil, fmt.Errorf("collective: bucket size %d bytes is negative", cfg.BucketBytes)
	case cfg.Op < Sum || cfg.Op > Min:
		return nil, fmt.Errorf("collective: bucketer: unknown reduction %v", cfg.Op)
	case !cfg.Wire.valid():
		return nil, fmt.Errorf("collective: bucketer: unknown wire dtype %v", cfg.Wire)
	}
	for i, s := range segs {
		if s.Len <= 0 || s.Off < 0 || s.Off > len(arena)-s.Len {
			return nil, fmt.Errorf("collective: bucketer: segment %d %+v is empty or outside the arena of %d elements", i, s, len(arena))
		}
	}
	order := make([]int, len(segs))
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, func(a, b int) int { return segs[a].Off - segs[b].Off })
	for k := 1; k < len(order); k++ {
		a, b := segs[order[k-1]], segs[order[k]]
		if a.Off+a.Len > b.Off {
			return nil, fmt.Errorf("collective: bucketer: segments %d %+v and %d %+v overlap", order[k-1], a, order[k], b)
		}
	}
	b := &Bucketer{arena: arena, segs: slices.Clone(segs), of: make([]int, len(segs)), cfg: cfg, id: planID(len(arena), segs, cfg)}
	b.buckets = plan(segs, cfg.BucketBytes)
	for i, bk := range b.buckets {
		for _, s := range bk.Segments {
			b.of[s] = i
		}
	}
	return b, nil
}

// plan groups segs (in ready order) into buckets: a bucket takes the next
// segment while the segment is adjacent to the bucket's range in the arena
// and the bucket stays within capBytes float32 bytes. A bucket always takes
// at least one segment. (The checks of NewBucketer are the caller's.)
func plan(segs []Segment, capBytes int) []Bucket {
	var out []Bucket
	for i, s := range segs {
		if n := len(out); n > 0 {
			cur := &out[n-1]
			adjacent := s.Off+s.Len == cur.Off || s.Off == cur.Off+cur.Len
			if adjacent && 4*(cur.Len+s.Len) <= capBytes {
				cur.Off = min(cur.Off, s.Off)
				cur.Len += s.Len
				cur.Segments = append(cur.Segments, i)
				continue
			}
		}
		out = append(out, Bucket{Off: s.Off, Len: s.Len, Segments: []int{i}})
	}
	return out
}

// Buckets returns the plan (a copy).
func (b *Bucketer) Buckets() []Bucket {
	out := slices.Clone(b.buckets)
	for i := range out {
		out[i].Segments = slices.Clone(out[i].Segments)
	}
	return out
}

// Reducer is what a Round runs its buckets on; *Group is one.
type Reducer interface {
	AllReduceWireAsync(ctx context.Context, buf []float32, op Op, wire DType) *Handle
	Epoch() uint64
}

// Round is one reduction of the arena (one training step's gradients).
// Ready and Wait may be called from any goroutine, but one at a time is
// the intended use (backward calls Ready, then the optimizer calls Wait).
type Round struct {
	b      *Bucketer
	g      Reducer
	ctx    context.Context
	cancel context.CancelFunc

	mu       sync.Mutex
	ready    []bool
	missing  []int // per bucket: segments not yet ready
	next     int   // next bucket to launch
	waited   bool
	checking bool  // the plan check runs: launch nothing yet
	err      error // first failure of a bucket (or the round)
	wg       sync.WaitGroup
}

// Start begins one round on g. ctx bounds every bucket's all-reduce
// (cancelling it aborts them). The caller must end the round with Wait.
// On g's first round the plan check runs first (see Bucketer): Start does
// not wait for it, the buckets do.
func (b *Bucketer) Start(ctx context.Context, g Reducer) *Round {
	ctx, cancel := context.WithCancel(ctx)
	r := &Round{b: b, g: g, ctx: ctx, cancel: cancel, ready: make([]bool, len(b.segs)), missing: make([]int, len(b.buckets))}
	for i, bk := range b.buckets {
		r.missing[i] = len(bk.Segments)
	}
	b.mu.Lock()
	first := b.checked != g
	b.checked = g
	b.mu.Unlock()
	if first {
		r.checkPlan()
	}
	return r
}

// checkPlan launches the plan check of the round's Reducer (see Bucketer)
// ahead of every bucket, so that it is the same operation on every
// member. Buckets wait for it (Ready and Wait only record what to launch),
// so no mismatched bucket has run when it fails the round. It costs one
// all-reduce of two floats per Reducer (epoch), before the first bucket.
func (r *Round) checkPlan() {
	id := float32(r.b.id)
	v := []float32{id, -id}
	r.checking = true
	h := r.g.AllReduceWireAsync(r.ctx, v, Max, Float32)
	r.wg.Go(func() {
		<-h.done
		switch {
		case h.err != nil:
			r.fail(fmt.Errorf("collective: bucketed all-reduce %v over %v: plan check before bucket 0 of %d, epoch %d: %w",
				r.b.cfg.Op, r.b.cfg.Wire, len(r.b.buckets), r.g.Epoch(), h.err))
		case v[0] != id || -v[1] != id:
			r.fail(fmt.Errorf("%w, epoch %d: this member's plan %06x (%d buckets of at most %d bytes over %d segments, %d elements, %v, %v wire), the job's range %06x..%06x: every member needs the same parameters in the same order, bucket size, op and wire type",
				ErrPlanMismatch, r.g.Epoch(), r.b.id, len(r.b.buckets), r.b.cfg.BucketBytes, len(r.b.segs), len(r.b.arena), r.b.cfg.Op, r.b.cfg.Wire, uint32(-v[1]), uint32(v[0])))
		}
		r.mu.Lock()
		defer r.mu.Unlock()
		r.checking = false
		r.launchDue()
	})
}

// launchDue launches, in plan order, every bucket that is due: all of
// its segments ready, or any once Wait was called; none while the plan
// check runs or after a failure. r.mu is held.
func (r *Round) launchDue() {
	if r.checking || r.err != nil {
		return
	}
	for r.next < len(r.missing) && (r.waited || r.missing[r.next] == 0) {
		r.launch()
	}
}

// Ready reports that segment seg's values are final. Every bucket whose
// segments are all ready, and whose predecessors in the plan are launched,
// is launched now (or when the plan check has passed).
func (r *Round) Ready(seg int) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	switch {
	case r.waited:
		return fmt.Errorf("collective: bucketed all-reduce: segment %d ready after Wait", seg)
	case seg < 0 || seg >= len(r.ready):
		return fmt.Errorf("collective: bucketed all-reduce: segment %d out of range [0, %d)", seg, len(r.ready))
	case r.ready[seg]:
		return fmt.Errorf("collective: bucketed all-reduce: segment %d reported ready twice", seg)
	case r.err != nil:
		return r.err
	}
	r.ready[seg] = true
	r.missing[r.b.of[seg]]--
	r.launchDue()
	return nil
}

// launch starts bucket r.next; r.mu is held.
func (r *Round) launch() {
	i := r.next
	r.next++
	bk := r.b.buckets[i]
	h := r.g.AllReduceWireAsync(r.ctx, r.b.arena[bk.Off:bk.Off+bk.Len], r.b.cfg.Op, r.b.cfg.Wire)
	r.wg.Go(func() {
		<-h.done
		if h.err != nil {
			r.fail(fmt.Errorf("collective: bucketed all-reduce %v over %v: bucket %d of %d (elements [%d, %d), segments %v), epoch %d: %w",
				r.b.cfg.Op, r.b.cfg.Wire, i, len(r.b.buckets), bk.Off, bk.Off+bk.Len, bk.Segments, r.g.Epoch(), h.err))
		}
	})
}

// fail records the round's first error and aborts its other buckets, so
// that they end now instead of at their deadline.
func (r *Round) fail(err error) {
	r.mu.Lock()
	first := r.err == nil
	if first {
		r.err = err
	}
	r.mu.Unlock()
	if first {
		r.cancel()
	}
}

// Wait launches the buckets not launched yet (in plan order, ready or
// not: the caller states the arena is final) and waits for all of them.
// If ctx ends first, the round is aborted and Wait still returns only once
// its operations have stopped. The error names the failed bucket, the
// epoch and the operation.
func (r *Round) Wait(ctx context.Context) error {
	r.mu.Lock()
	if r.waited {
		r.mu.Unlock()
		return errors.New("collective: bucketed all-reduce: Wait called twice")
	}
	r.waited = true
	r.launchDue()
	r.mu.Unlock()
	done := make(chan struct{})
	go func() {
		r.wg.Wait()
		close(done)
	}()
	var cause error
	select {
	case <-done:
	case <-ctx.Done():
		cause = fmt.Errorf("collective: bucketed all-reduce, epoch %d: waiting: %w", r.g.Epoch(), ctx.Err())
		r.cancel()
		<-done
	}
	r.cancel()
	r.mu.Lock()
	defer r.mu.Unlock()
	if cause != nil && (r.err == nil || errors.Is(r.err, context.Canceled)) {
		return cause
	}
	return r.err
}
