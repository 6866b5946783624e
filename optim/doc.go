// Package optim holds first-order optimizers that update a flat float32
// parameter arena in place from a gradient arena of the same layout, and
// learning-rate schedules including the linear scaling rule for elastic
// data parallelism.
//
// Invariants:
//   - Update is deterministic: the same parameters, gradients, learning rate
//     and state give bitwise the same result on every peer, so peers that
//     all-reduced the same gradients stay bitwise identical.
//   - Optimizer state (moments, step count) round-trips through
//     MarshalBinary/UnmarshalBinary exactly; hyper-parameters are
//     configuration and are not part of the state.
//   - Decoders bound every length by the bytes present before allocating and
//     never panic on malformed input.
package optim
