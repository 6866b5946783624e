// Package model holds neural-network layers whose parameters live in one
// contiguous float32 arena and whose gradients live in a second arena of the
// same length, so that a single all-reduce covers every gradient of a model
// with no packing copy.
//
// Invariants:
//   - Every layer's weights and biases are views (sub-slices) of
//     Model.Params(); its gradients are views of Model.Grads() at the same
//     offsets. The arenas never move after a model is built.
//   - Backward accumulates into the gradient arena (BLAS beta = 1); callers
//     zero it with ZeroGrad before each minibatch.
//   - Tensors are batch-major: sample i of a batch occupies
//     x[i*size : (i+1)*size], images in channel-height-width order.
//   - Heavy operations (matrix products, convolution through im2col) go
//     through gonum's blas32 package, so the `openblas` build tag can swap in
//     OpenBLAS; the default build is pure Go.
//   - Buffers are sized on the first minibatch and reused, so a training
//     step allocates nothing once warmed up at its largest batch size.
//   - Nothing in this package is safe for concurrent use; one goroutine owns a
//     Model.
package model
