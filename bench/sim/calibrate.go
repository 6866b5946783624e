package sim

import (
	"fmt"
	"math"
)

// RingPoint is one measured ring all-reduce: Bytes over Peers took Sec.
type RingPoint struct {
	Bytes float64 `json:"bytes"`
	Peers int     `json:"peers"`
	Sec   float64 `json:"sec"`
}

// AlphaFit is the ring model fitted to measured all-reduces.
type AlphaFit struct {
	AlphaSec    float64 // per-chunk overhead, as Ring.AlphaSec
	BytesPerSec float64 // per-direction payload rate of a peer
	RMSRelErr   float64 // root mean square of (model-measured)/measured
	MaxRelErr   float64 // largest |model-measured|/measured
	Points      int
}

// FitRingAlpha fits the per-chunk overhead α and the per-direction payload
// rate x of the ring model (ringAllReduce: linkFree = start + α + size/x) to
// measured all-reduces by least squares of relative errors, so that
// microsecond and second-long all-reduces weigh alike. Small all-reduces are
// dominated by α, large ones by 1/x; the rate is fitted rather than taken
// from net so that a few per cent of goodput error on the large ones is not
// read as per-chunk overhead. net gives chunk size, latency and reduction
// speed; its Ring.AlphaSec and rate are ignored. α ≥ 0.
//
// The model's time is, for fixed sizes, a maximum of affine functions of
// (α, 1/x) (one per path through the schedule), so on each piece the
// problem is linear: Gauss-Newton steps with slopes taken on the current
// piece reach the piece's exact least-squares solution, and the iteration
// stops when the solution stays on the piece it was computed from.
func FitRingAlpha(pts []RingPoint, net Net) (AlphaFit, error) {
	sizes := map[float64]bool{}
	for _, p := range pts {
		if p.Peers < 2 || !(p.Bytes > 0) || !(p.Sec > 0) || math.IsInf(p.Bytes+p.Sec, 0) {
			return AlphaFit{}, fmt.Errorf("%w: ring point %+v: want ≥ 2 peers, bytes and seconds > 0", ErrConfig, p)
		}
		sizes[p.Bytes] = true
	}
	if len(sizes) < 2 {
		return AlphaFit{}, fmt.Errorf("%w: fit alpha needs 2 distinct sizes, got %d points of %d", ErrConfig, len(pts), len(sizes))
	}
	net.Ring.AlphaSec = 0
	model := func(p RingPoint, alpha, u float64) float64 {
		n := net
		n.Ring.AlphaSec = alpha
		return n.ringAllReduce(p.Bytes, p.Peers, 1/u, LimitLink).Sec
	}
	// Start from α = 0 and the rate of the largest all-reduce.
	var big RingPoint
	for _, p := range pts {
		if p.Bytes > big.Bytes {
			big = p
		}
	}
	alpha, u := 0.0, big.Sec/model(big, 0, 1)
	converged := false
	for it := 0; it < 100 && !converged; it++ {
		// Slopes of the current piece: the model is affine there, so a
		// difference quotient over a step far below any breakpoint's
		// distance is its slope up to rounding.
		da, du := max(alpha, 1e-6)*1e-6, u*1e-6
		var saa, sau, suu, sa, su float64
		for _, p := range pts {
			t := model(p, alpha, u)
			ka := (model(p, alpha+da, u) - t) / da
			ku := (model(p, alpha, u+du) - t) / du
			c := t - ka*alpha - ku*u // the piece's constant
			w := 1 / (p.Sec * p.Sec)
			y := p.Sec - c
			saa, sau, suu, sa, su = saa+w*ka*ka, sau+w*ka*ku, suu+w*ku*ku, sa+w*ka*y, su+w*ku*y
		}
		det := saa*suu - sau*sau
		na, nu := (sa*suu-su*sau)/det, (su*saa-sa*sau)/det
		if !(det > 0) || na < 0 {
			na, nu = 0, su/suu
		}
		if !(nu > 0) {
			return AlphaFit{}, fmt.Errorf("%w: fit alpha: no positive rate fits %d points", ErrConfig, len(pts))
		}
		converged = math.Abs(na-alpha) <= 1e-9*max(na, 1e-6) && math.Abs(nu-u) <= 1e-9*nu
		alpha, u = na, nu
	}
	if !converged {
		return AlphaFit{}, fmt.Errorf("%w: fit alpha over %d points did not settle on one piece of the model", ErrConfig, len(pts))
	}
	f := AlphaFit{AlphaSec: alpha, BytesPerSec: 1 / u, Points: len(pts)}
	for _, p := range pts {
		e := (model(p, alpha, u) - p.Sec) / p.Sec
		f.RMSRelErr += e * e
		f.MaxRelErr = max(f.MaxRelErr, math.Abs(e))
	}
	f.RMSRelErr = math.Sqrt(f.RMSRelErr / float64(len(pts)))
	return f, nil
}
