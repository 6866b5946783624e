package sim

import (
	"fmt"

	"github.com/ringtrain/ringtrain/bench/profile"
	"github.com/ringtrain/ringtrain/collective"
)

// Design is the gradient-averaging architecture being simulated.
type Design string

// Designs.
const (
	DesignRing Design = "ring" // ringtrain: ring all-reduce, no server
	DesignPS   Design = "ps"   // TF 0.8: parameter servers, synchronous replicas
)

// Step configures how a training step communicates.
type Step struct {
	Design Design
	// Overlap: gradients are fused into buckets as the trainer fuses them
	// (collective.NewBucketer's plan with BucketBytes of the float32 arena;
	// 0 is collective.DefaultBucketBytes) in the order they become ready,
	// and a bucket's reduction starts as soon as its last gradient is ready
	// (buckets reduce one at a time, in plan order). Without it the whole
	// gradient is reduced in one operation after backward.
	Overlap     bool
	BucketBytes float64
	// Wire is the gradient's dtype on the wire (4 or 2 bytes per element).
	Wire collective.DType
	// Scale divides every gradient's element count (scaled emulation,
	// Segments); 0 means 1.
	Scale float64
	// Plan, if not nil, is Buckets(tl) computed beforehand (a grid reuses
	// one plan for every n, rate and core count).
	Plan []Bucket
	// GPUsPerNode peers share one node's link and transport cores (0 means 1).
	// With a flat ring only one ring hop per node leaves the node, but every
	// peer's hop goes through the transport. Hierarchical: the GPUs of a node
	// reduce-scatter among themselves at IntraBytesPerSec, the node leaders
	// run the ring, and the result is gathered back at IntraBytesPerSec.
	GPUsPerNode      int
	Hierarchical     bool
	IntraBytesPerSec float64
	// PSServers is the number of parameter servers (DesignPS), each on its
	// own node like the workers; parameters are sharded evenly across them.
	PSServers int
}

// Result is one simulated configuration.
type Result struct {
	N            int
	StepSec      float64 // one synchronous step on n GPUs
	OneGPUSec    float64 // the same step on one GPU (no communication)
	ImagesPerSec float64 // n·batch/step
	Efficiency   float64 // OneGPUSec/StepSec: images/s relative to n independent GPUs
	CommSec      float64 // time the network was busy reducing this step's gradients
	ExposedSec   float64 // StepSec - OneGPUSec: communication not hidden behind compute
	BytesPerSec  float64 // per-direction transport rate per node (ring) or per server (PS)
	RateLimit    Limit   // link or transport CPU: what sets BytesPerSec
	Limit        Limit   // what limits the step: compute, link, transport CPU, per-chunk, PS server
	Buckets      int
}

// Bucket is a group of gradients reduced together and when it can start.
type Bucket struct {
	Bytes   float64
	ReadyMs float64 // from the start of backward
}

func (st Step) scale() float64 {
	if st.Scale > 0 {
		return st.Scale
	}
	return 1
}

// Simulate returns the simulated step of n GPUs, each running timeline tl
// with `batch` samples, on net.
func Simulate(tl profile.Timeline, batch, n int, net Net, st Step) (Result, error) {
	if err := net.validate(); err != nil {
		return Result{}, err
	}
	g := max(st.GPUsPerNode, 1)
	switch {
	case n < 1 || batch < 1:
		return Result{}, fmt.Errorf("%w: n = %d, batch = %d", ErrConfig, n, batch)
	case st.Overlap && st.BucketBytes < 0:
		return Result{}, fmt.Errorf("%w: bucket size %v", ErrConfig, st.BucketBytes)
	case n%g != 0:
		return Result{}, fmt.Errorf("%w: %d GPUs is not a multiple of %d per node", ErrConfig, n, g)
	case st.Hierarchical && g > 1 && !(st.IntraBytesPerSec > 0):
		return Result{}, fmt.Errorf("%w: hierarchical needs an intra-node rate", ErrConfig)
	case st.Design == DesignPS && st.PSServers < 1:
		return Result{}, fmt.Errorf("%w: %d parameter servers", ErrConfig, st.PSServers)
	case st.Design != DesignRing && st.Design != DesignPS:
		return Result{}, fmt.Errorf("%w: design %q", ErrConfig, st.Design)
	}
	res := Result{N: n, OneGPUSec: tl.StepMs() / 1000}
	bs, err := st.Buckets(tl)
	if err != nil {
		return Result{}, err
	}
	res.Buckets = len(bs)
	fwd, bwd := tl.ForwardMs/1000, tl.BackwardMs/1000
	var commEnd float64
	var bwSec float64 // bandwidth-bound part of the busy time, to classify limits
	switch {
	case n == 1:
		commEnd = fwd + bwd
	case st.Design == DesignRing:
		commEnd, bwSec = st.ringComm(bs, n, g, net, fwd, &res)
	default:
		commEnd, bwSec = st.psComm(bs, n, net, fwd, &res)
	}
	res.StepSec = max(fwd+bwd, commEnd) + tl.OptimizerMs/1000
	res.ImagesPerSec = float64(n*batch) / res.StepSec
	res.Efficiency = res.OneGPUSec / res.StepSec
	res.ExposedSec = res.StepSec - res.OneGPUSec
	switch {
	case n == 1 || res.ExposedSec <= 0.05*res.OneGPUSec:
		res.Limit = LimitCompute
	case st.Design == DesignPS && bwSec >= res.CommSec-bwSec:
		res.Limit = LimitPSServer
	case bwSec >= res.CommSec-bwSec:
		res.Limit = res.RateLimit
	default:
		res.Limit = LimitChunk
	}
	return res, nil
}

// ringComm runs the buckets' all-reduces one after another, each starting when
// its bucket is ready and the previous one is done. It returns when the last
// finished and the bandwidth-bound share of the busy time.
func (st Step) ringComm(bs []Bucket, n, g int, net Net, fwd float64, res *Result) (end, bwSec float64) {
	nodes := n / g
	hier := st.Hierarchical && g > 1
	var x float64
	var lim Limit
	if hier || g == 1 {
		x, lim = net.rate(1, true)
	} else {
		x, lim = net.rate(float64(g), true)
	}
	res.BytesPerSec, res.RateLimit = x, lim
	for _, b := range bs {
		start := max(end, fwd+b.ReadyMs/1000)
		var t float64
		if hier {
			intra := 2 * float64(g-1) / float64(g) * b.Bytes / st.IntraBytesPerSec
			ar := net.ringAllReduce(b.Bytes, nodes, x, lim)
			t = intra + ar.Sec
			bwSec += ar.BandwidthSec
		} else {
			ar := net.ringAllReduce(b.Bytes, n, x, lim)
			t = ar.Sec
			bwSec += ar.BandwidthSec
		}
		end = start + t
		res.CommSec += t
	}
	return end, bwSec
}
