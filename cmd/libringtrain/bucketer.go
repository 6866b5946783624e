package main

import (
	"context"
	"fmt"
	"sync"
	"unsafe"

	"github.com/ringtrain/ringtrain/collective"
)

// bucketer is a collective.Bucketer over a host arena (the gradients of a
// model, flat), bound to a node: each round runs on the node's group of
// the moment it starts. The arena pointer is kept until rt_free; the host
// keeps the arena alive and in place that long.
type bucketer struct {
	s *session
	b *collective.Bucketer

	mu    sync.Mutex
	round *collective.Round
	ctx   context.Context // the round's epoch context
	ready []bool
	epoch uint64
}

func (l *library) newBucketer(h int64, arena unsafe.Pointer, count int64, segs []int64, bucketBytes int64, op int32, wire dtype) (int64, error) {
	s, err := get[*session](l, h, "node")
	if err != nil {
		return 0, err
	}
	o, err := parseOp(op)
	if err != nil {
		return 0, err
	}
	if !wire.valid() {
		return 0, errInvalidf("bucketer: unsupported wire dtype %d", wire)
	}
	buf, err := viewBuffer(arena, count, fp32, "bucketer")
	if err != nil {
		return 0, err
	}
	if len(segs)%2 != 0 {
		return 0, errInvalidf("bucketer: %d segment numbers, want (offset, length) pairs", len(segs))
	}
	ss := make([]collective.Segment, len(segs)/2)
	for i := range ss {
		ss[i] = collective.Segment{Off: int(segs[2*i]), Len: int(segs[2*i+1])}
	}
	if bucketBytes < 0 || bucketBytes > 1<<40 {
		return 0, errInvalidf("bucketer: bucket size %d bytes", bucketBytes)
	}
	b, err := collective.NewBucketer(buf.f32, ss, collective.BucketConfig{BucketBytes: int(bucketBytes), Op: o, Wire: collective.DType(wire)})
	if err != nil {
		return 0, fmt.Errorf("%w: %w", errInvalid, err)
	}
	return l.put(&bucketer{s: s, b: b, ready: make([]bool, len(ss))}), nil
}

// start begins a round on the node's current group.
func (bk *bucketer) start() error {
	bk.mu.Lock()
	defer bk.mu.Unlock()
	if bk.round != nil {
		return errInvalidf("bucketer: a round is in progress (wait for it before starting another)")
	}
	g, ctx, err := bk.s.group("bucketed all-reduce")
	if err != nil {
		return err
	}
	bk.round, bk.ctx = bk.b.Start(ctx, g), ctx
	bk.epoch = g.Epoch()
	clear(bk.ready)
	return nil
}

func (bk *bucketer) markReady(seg int64) error {
	bk.mu.Lock()
	defer bk.mu.Unlock()
	switch {
	case bk.round == nil:
		return errInvalidf("bucketer: segment %d ready outside a round (start one first)", seg)
	case seg < 0 || seg >= int64(len(bk.ready)):
		return errInvalidf("bucketer: segment %d out of range [0, %d)", seg, len(bk.ready))
	case bk.ready[seg]:
		return errInvalidf("bucketer: segment %d ready twice in one round (one backward per step: step or wait between backward passes)", seg)
	}
	bk.ready[seg] = true
	// An error here is an earlier bucket's failure: the round is broken.
	return comm(bk.round.Ready(int(seg)))
}

// wait launches the buckets not yet launched and waits for all of them.
func (bk *bucketer) wait() error {
	bk.mu.Lock()
	r, ctx := bk.round, bk.ctx
	bk.round = nil
	bk.mu.Unlock()
	if r == nil {
		return errInvalidf("bucketer: no round to wait for")
	}
	return bk.s.comm(ctx, r.Wait(ctx))
}

// free ends a request or a bucketer (finishing its round first).
func (l *library) free(h int64) error {
	l.mu.Lock()
	v, ok := l.handles[h]
	l.mu.Unlock()
	switch x := v.(type) {
	case *bucketer:
		bk := x
		bk.mu.Lock()
		r, ctx := bk.round, bk.ctx
		bk.round = nil
		bk.mu.Unlock()
		if r != nil {
			_ = r.Wait(ctx) // nothing may touch the arena after rt_free
		}
	case *request:
		<-x.done
	default:
		if !ok {
			return errInvalidf("free: handle %d is not open", h)
		}
		return errInvalidf("free: handle %d is a node (use rt_close)", h)
	}
	l.drop(h)
	return nil
}
