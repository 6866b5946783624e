// Package ring holds the ring algorithms as pure functions (the ring order
// and the chunk schedule of each collective) and an executor that runs a
// schedule over two transport.Conns: the previous and the next peer.
//
// A Schedule is the complete, ordered list of chunk transfers one rank makes.
// The executor sends in Sends order and receives in Recvs order; a send whose
// data is produced by an earlier receive names it in After, which is what
// pipelines the ring: chunk k can be forwarded as soon as it is reduced while
// chunk k+1 is still on the wire.
//
// A ring step's sends also wait (Send.Sync) until the previous step has
// arrived (the first of them for all but its last chunk), so that no rank
// runs more than about a chunk ahead of its upstream neighbour across a
// step boundary. Without it a rank whose outgoing link is a little faster
// than its incoming one runs up to a whole step ahead; its link then keeps
// a standing queue (QUIC's congestion window fills the bottleneck's
// buffer), and the acknowledgements of the data it receives wait behind
// that queue, inflating the upstream link's round-trip time until that link
// is limited by its congestion window rather than its rate (on 40 Mbit/s
// tbf links, one link of a 4-peer ring ran at 4.25–4.64 MB/s for whole
// rounds while the others ran at 4.78). With the boundary the links stay
// within about a chunk of each other (traced: all four at 4.46–4.58 MB/s a
// round), at the cost of a pause at each step boundary while the step's
// last chunk crosses the upstream link's queue (100–140 ms a step there);
// within a step chunks still pipeline, and the last chunk of a step
// overlaps the first of the next. Default-flag runs at 40 Mbit/s: 5 of 8 at
// ≥ 95% of raw QUIC (median 94.7%) against a median of 88.0% without it in
// the same hour on a loaded machine (bench/results/stepsync-40.txt).
//
// Invariants of every schedule built here, for all ranks r of a ring:
//   - rank r's Sends, in order, describe exactly the same (length) sequence
//     of messages as rank r+1's Recvs, so both sides agree chunk by chunk;
//   - empty segments produce no messages, on both sides alike;
//   - a send never reads a range that a later receive of the same rank may
//     still be writing (the ring's dependency chain guarantees it);
//   - After ≤ Sync < len(Recvs): a send waits only for receives of earlier
//     steps, so the ring cannot deadlock on the boundary.
package ring

import (
	"slices"
)

// Order returns the ring order of members: sorted by ID without duplicates,
// so every peer derives the same ring from the same member set.
func Order(members []string) []string {
	o := slices.Clone(members)
	slices.Sort(o)
	return slices.Compact(o)
}

// Send is one outgoing chunk: buf[Off:Off+Len], sent once receive After has
// completed (After < 0: at once) and receive Sync too (Sync ≥ After; the
// step boundary, see the package comment). After is the receive whose data
// the chunk carries; Sync only paces.
type Send struct {
	Off, Len int
	After    int
	Sync     int
}

// Recv is one incoming chunk for buf[Off:Off+Len]: reduced into the buffer
// (Reduce) or copied over it. Final marks the chunk's last reduction: the
// executor applies the finishing step (e.g. division for an average) before
// the chunk is forwarded. Forward says that the first send waiting for this
// receive (After = its index) sends exactly its range, so an executor may
// pass the chunk on as it has it on the wire instead of encoding it again.
type Recv struct {
	Off, Len int
	Reduce   bool
	Final    bool
	Forward  bool
}

// Schedule is the ordered list of transfers of one rank in one collective.
type Schedule struct {
	Sends []Send
	Recvs []Recv
}

// step is one ring step: which segment goes out, which comes in.
type step struct {
	send, recv    int
	reduce, final bool
}

// segment bounds of s-th of parts equal parts of n elements.
func segment(s, parts, n int) (off, length int) {
	lo := s * n / parts
	hi := (s + 1) * n / parts
	return lo, hi - lo
}

func mod(a, m int) int { return ((a % m) + m) % m }

// chunks calls f for each chunk of the range [off, off+length).
func chunks(off, length, chunk int, f func(off, length int)) {
	for c := 0; c < length; c += chunk {
		f(off+c, min(chunk, length-c))
	}
}

// build turns ring steps into chunk transfers. The segment sent at step t+1
// is the one received at step t, so each of its chunks waits for the matching
// receive, and for step t's end (the step boundary): its first chunk for all
// but the last receive of step t, the others for all of them.
func build(steps []step, seg func(s int) (int, int), chunk int) *Schedule {
	s := &Schedule{}
	prevStart := -1 // index of the first receive of the previous step
	for _, st := range steps {
		off, l := seg(st.send)
		j := 0
		last := len(s.Recvs) - 1 // the previous step's last receive
		chunks(off, l, chunk, func(o, n int) {
			after, sync := -1, -1
			if prevStart >= 0 {
				after = prevStart + j
				r := &s.Recvs[after]
				r.Forward = r.Off == o && r.Len == n
				// The first chunk overlaps the previous step's last one;
				// the others wait for all of it.
				sync = last
				if j == 0 {
					sync = max(last-1, after)
				}
			}
			s.Sends = append(s.Sends, Send{Off: o, Len: n, After: after, Sync: sync})
			j++
		})
		prevStart = len(s.Recvs)
		off, l = seg(st.recv)
		chunks(off, l, chunk, func(o, n int) {
			s.Recvs = append(s.Recvs, Recv{Off: o, Len: n, Reduce: st.reduce, Final: st.final})
		})
	}
	return s
}

// AllReduce is the bandwidth-optimal ring all-reduce of n elements for rank of
// size: size-1 reduce-scatter steps, after which rank r owns the reduced
// segment r+1, then size-1 all-gather steps. Each segment travels in chunks
// of at most chunk elements.
func AllReduce(rank, size, n, chunk int) *Schedule {
	chunk = max(chunk, 1)
	if size == 1 {
		return &Schedule{}
	}
	steps := make([]step, 0, 2*(size-1))
	for t := 0; t < size-1; t++ {
		steps = append(steps, step{send: mod(rank-t, size), recv: mod(rank-t-1, size), reduce: true, final: t == size-2})
	}
	for t := 0; t < size-1; t++ {
		steps = append(steps, step{send: mod(rank+1-t, size), recv: mod(rank-t, size)})
	}
	return build(steps, func(s int) (int, int) { return segment(s, size, n) }, chunk)
}

// AllGather gathers size blocks of n elements each into a buffer of size·n
// elements, rank r's block at r·n, in size-1 ring steps.
func AllGather(rank, size, n, chunk int) *Schedule {
	chunk = max(chunk, 1)
	steps := make([]step, 0, size)
	for t := 0; t < size-1; t++ {
		steps = append(steps, step{send: mod(rank-t, size), recv: mod(rank-t-1, size)})
	}
	return build(steps, func(s int) (int, int) { return s * n, n }, chunk)
}

// Broadcast is a pipelined chain from root around the ring: each rank
// forwards chunk k as soon as it has it; the last rank before root only
// receives.
func Broadcast(rank, size, root, n, chunk int) *Schedule {
	chunk = max(chunk, 1)
	s := &Schedule{}
	d := mod(rank-root, size)
	j := 0
	chunks(0, n, chunk, func(o, l int) {
		if d > 0 {
			s.Recvs = append(s.Recvs, Recv{Off: o, Len: l, Forward: d < size-1})
		}
		if d < size-1 {
			after := -1
			if d > 0 {
				after = j
			}
			s.Sends = append(s.Sends, Send{Off: o, Len: l, After: after, Sync: after})
		}
		j++
	})
	return s
}
