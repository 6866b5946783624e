package data

import "math/rand/v2"

// Order returns the sample order of data epoch epoch for a data set of n
// samples: a Fisher–Yates shuffle driven by PCG seeded with (seed, epoch).
// Every peer running the same binary computes the same permutation.
func Order(seed, epoch uint64, n int) []int32 {
	o := make([]int32, n)
	for i := range o {
		o[i] = int32(i)
	}
	rng := rand.New(rand.NewPCG(seed, epoch))
	for i := n - 1; i > 0; i-- {
		j := int(rng.Uint64N(uint64(i + 1)))
		o[i], o[j] = o[j], o[i]
	}
	return o
}

// Share describes one rank's part of one global step.
type Share struct {
	// Lo, Hi: this rank's positions [Lo, Hi) in the epoch's order.
	Lo, Hi int
	// Global is the number of samples the whole step consumes; the cursor
	// advances by Global.
	Global int
}

// Len is the number of samples of this rank.
func (s Share) Len() int { return s.Hi - s.Lo }

// ShareOf computes rank's share of the step starting at cursor in an epoch
// of n samples, for size peers with per-peer batch perPeer. The step takes
// min(size·perPeer, n−cursor) samples starting at cursor; rank r gets the
// contiguous slice [cursor + r·g/size, cursor + (r+1)·g/size), so full
// batches give every rank exactly perPeer samples and the epoch tail is
// split as evenly as possible (some ranks may get none).
func ShareOf(cursor, n, rank, size, perPeer int) Share {
	if size <= 0 || rank < 0 || rank >= size || perPeer <= 0 || cursor < 0 || cursor >= n {
		return Share{Lo: cursor, Hi: cursor}
	}
	g := min(size*perPeer, n-cursor)
	return Share{Lo: cursor + rank*g/size, Hi: cursor + (rank+1)*g/size, Global: g}
}
