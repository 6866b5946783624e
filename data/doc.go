// Package data loads MNIST from IDX files (an embedded copy by default) and
// defines how a data-parallel job walks through a dataset: one
// deterministic global sample order per data epoch, and each peer's share
// of each global batch computed from (cursor, rank, size) alone.
//
// Invariants:
//   - The order of data epoch e is a pure function of (seed, e, N); every
//     peer computes the same permutation without communication.
//   - A step starting at cursor c with size peers of per-peer batch b covers
//     exactly positions [c, c+min(size·b, N−c)) of the order, split into
//     contiguous rank slices in rank order. Because only the cursor carries
//     over between steps, changing the number of peers between two steps
//     neither skips nor repeats a sample within the epoch.
//   - IDX decoding bounds every header field, allocates no more than the
//     bytes actually present, and never panics on malformed input.
package data
