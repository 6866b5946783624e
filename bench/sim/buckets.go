package sim

import (
	"fmt"
	"math"

	"github.com/ringtrain/ringtrain/bench/profile"
	"github.com/ringtrain/ringtrain/collective"
)

// Segment is one gradient tensor's place in the flat float32 arena, in the
// order backward makes the tensors ready (the arena is laid out in that
// order, so consecutive segments are adjacent), and when it is ready.
type Segment struct {
	Off, Len int
	ReadyMs  float64 // from the start of backward
}

// Segments lays the timeline's gradients out in a flat arena of
// Params()/scale floats (scale 1: one segment per tensor, exactly). Scaled
// down, tensor i ends at round(Σ_{j≤i} numel_j / scale), so the arena's
// length is the scaled gradient's, not inflated by rounding every small
// tensor up to one float; a tensor that rounds to nothing joins the next
// segment (which is ready no earlier: ready times do not decrease), and
// trailing ones the last segment.
func Segments(tl profile.Timeline, scale float64) []Segment {
	if !(scale >= 1) {
		scale = 1
	}
	var out []Segment
	var cum int64
	prev := 0
	for _, g := range tl.Grads {
		cum += g.Numel
		end := int(math.Round(float64(cum) / scale))
		if end <= prev {
			continue
		}
		out = append(out, Segment{Off: prev, Len: end - prev, ReadyMs: g.ReadyMs})
		prev = end
	}
	switch {
	case len(out) == 0:
		// A gradient smaller than one float at this scale still takes one.
		out = []Segment{{Off: 0, Len: 1, ReadyMs: tl.BackwardMs}}
	case len(tl.Grads) > 0:
		last := &out[len(out)-1]
		last.ReadyMs = max(last.ReadyMs, tl.Grads[len(tl.Grads)-1].ReadyMs)
	}
	return out
}

// arenaLen is the floats segs cover.
func arenaLen(segs []Segment) int {
	if len(segs) == 0 {
		return 0
	}
	l := segs[len(segs)-1]
	return l.Off + l.Len
}

// Buckets is what one step all-reduces and when each part can start: without
// Overlap one bucket of the whole arena, ready at the end of backward; with
// it the plan of collective.NewBucketer (the trainer's bucketing) over the
// timeline's segments with BucketBytes, each bucket ready when its last
// segment is. Bytes are on the wire (Wire's size per element).
func (st Step) Buckets(tl profile.Timeline) ([]Bucket, error) {
	if st.Plan != nil {
		return st.Plan, nil
	}
	segs := Segments(tl, st.scale())
	size := float64(st.Wire.Size())
	if !st.Overlap {
		return []Bucket{{Bytes: float64(arenaLen(segs)) * size, ReadyMs: tl.BackwardMs}}, nil
	}
	// The planner only reads the arena's length: a fresh allocation that
	// is never written costs address space, not memory.
	arena := make([]float32, arenaLen(segs))
	cs := make([]collective.Segment, len(segs))
	for i, s := range segs {
		cs[i] = collective.Segment{Off: s.Off, Len: s.Len}
	}
	b, err := collective.NewBucketer(arena, cs, collective.BucketConfig{BucketBytes: int(st.BucketBytes), Op: collective.Avg, Wire: st.Wire})
	if err != nil {
		return nil, fmt.Errorf("%w: bucket plan: %w", ErrConfig, err)
	}
	var out []Bucket
	for _, bk := range b.Buckets() {
		ready := 0.0
		for _, i := range bk.Segments {
			ready = max(ready, segs[i].ReadyMs)
		}
		out = append(out, Bucket{Bytes: float64(bk.Len) * size, ReadyMs: ready})
	}
	return out, nil
}
