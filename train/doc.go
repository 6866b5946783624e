// Package train is ringtrain's synchronous data-parallel training loop.
//
// Each step, every peer takes its contiguous share of the global batch
// (data.ShareOf from the shared data cursor), computes the gradient of its
// share, sums the gradient arena across peers with one all-reduce, and
// applies the same optimizer update, so all peers stay bitwise identical.
//
// Invariants:
//   - Gradients are scaled by 1/Global (the step's global sample count)
//     before a Sum all-reduce, so the update is the gradient of the mean
//     loss over the global batch, also for an uneven epoch tail where ranks
//     hold different numbers of samples (or none).
//   - The training state (parameters, optimizer state, learning-rate scaler
//     state, step, data epoch, data cursor, data seed) is everything a peer
//     needs to continue bitwise identically; it serializes to a versioned,
//     bounds-checked blob for state sync and checkpoints. Dropout masks are
//     a pure function of (seed, data epoch, sample position), so there is no
//     random-generator stream to carry.
//   - A Trainer talks to its peers only through the small Comm interface,
//     which *collective.Group satisfies; the communicator may change between
//     steps (elastic membership), the Trainer keeps no reference to it.
//   - A Trainer is used by one goroutine at a time.
package train
