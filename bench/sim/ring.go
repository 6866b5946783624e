package sim

import (
	"fmt"
	"math"
)

// AllReduce is the simulated cost of one ring all-reduce.
type AllReduce struct {
	Sec          float64 // first send to last chunk received, on every peer
	BandwidthSec float64 // the bandwidth-optimal part, 2(n-1)/n·S/rate
	Chunks       int     // chunks per segment
	Steps        int     // 2(n-1)
	BytesPerSec  float64 // per-direction payload rate the peer achieved in the model
	RateLimit    Limit   // what set BytesPerSec: link or transport
}

// AllReduce simulates a ring all-reduce of `bytes` bytes over `peers` peers,
// one peer per node.
func (n Net) AllReduce(bytes float64, peers int) (AllReduce, error) {
	if err := n.validate(); err != nil {
		return AllReduce{}, err
	}
	if peers < 1 || !(bytes >= 0) || math.IsInf(bytes, 0) {
		return AllReduce{}, fmt.Errorf("%w: all-reduce of %v bytes over %d peers", ErrConfig, bytes, peers)
	}
	x, lim := n.rate(1, true)
	return n.ringAllReduce(bytes, peers, x, lim), nil
}

// RingRate is the per-direction payload rate of a ring peer when `perNode`
// peers share a node's transport, and what sets it.
func (n Net) RingRate(perNode int) (float64, Limit) { return n.rate(float64(max(perNode, 1)), true) }

// ringAllReduce evaluates the chunk schedule of one peer as ring.Run executes
// it: a sender walks the sends in order, each waiting for the receive it
// forwards; one receiver walks the receives in order and reduces each chunk
// (reduce-scatter) before taking the next. Segment s of the buffer is
// bytes/peers long (ring.AllReduce splits by elements; segments differ by at
// most one element, which the model ignores), split into chunks of
// n.chunk() bytes and a shorter last one.
//
// Recurrences, for step s in 0..2(n-1)-1 and chunk k in order:
//
//	start(s,k)  = max(linkFree, done(s-1,k), sync(s,k))  done(-1,k) = 0
//	sync(s,0)   = done(s-1,m-2), sync(s,k>0) = done(s-1,m-1) (s > 0; m-2
//	              is m-1 when m = 1): ring's step boundary (Send.Sync)
//	linkFree    = start(s,k) + alpha + size(k)/x
//	arrive(s,k) = linkFree + latency
//	done(s,k)   = max(arrive(s,k), done of the previous receive) + reduce(s,k)
//	reduce(s,k) = size(k)/reduceRate in reduce-scatter (s < n-1), else 0
//
// By symmetry the predecessor sends chunk (s,k) at the same moment this peer
// does, so arrive(s,k) is also when this peer has received it. Data arriving
// while the receiver is busy waits in the transport's buffers, as it does
// within a QUIC stream's flow-control window.
func (n Net) ringAllReduce(bytes float64, peers int, x float64, lim Limit) AllReduce {
	r := AllReduce{BytesPerSec: x, RateLimit: lim}
	if peers == 1 || bytes == 0 {
		return r
	}
	seg := bytes / float64(peers)
	c := n.chunk()
	m := int(math.Ceil(seg / c))
	last := seg - float64(m-1)*c
	size := func(k int) float64 {
		if k == m-1 {
			return last
		}
		return c
	}
	steps := 2 * (peers - 1)
	r.Chunks, r.Steps = m, steps
	r.BandwidthSec = float64(steps) * seg / x

	done := make([]float64, m)
	var linkFree, recvFree float64
	for s := 0; s < steps; s++ {
		reduceScatter := s < peers-1
		// The previous step's end, before this step overwrites done.
		syncFirst, syncRest := done[max(m-2, 0)], done[m-1]
		for k := 0; k < m; k++ {
			sync := syncRest
			if k == 0 {
				sync = syncFirst
			}
			start := max(linkFree, done[k], sync)
			linkFree = start + n.Ring.AlphaSec + size(k)/x
			recvFree = max(linkFree+n.Link.LatencySec, recvFree)
			if reduceScatter && n.Ring.ReduceBytesPerSec > 0 {
				recvFree += size(k) / n.Ring.ReduceBytesPerSec
			}
			done[k] = recvFree
		}
	}
	r.Sec = recvFree
	return r
}
