// Command libringtrain is ringtrain's C ABI, built with
//
//	go build -buildmode=c-shared -o libringtrain.so ./cmd/libringtrain
//
// which also writes libringtrain.h. Framework bindings (python/ringtrain)
// load it and drive one node per process: rt_init starts the node from a
// JSON config with the trainer's flag names, rt_boundary is called between
// training steps and returns the epoch to run the next step in, and the
// collectives work on raw host buffers.
//
// Invariants:
//   - No call crashes or exits the host: every export recovers panics, and
//     every failure is a return code (RT_OK 0, RT_ERR 1, RT_EINVAL 2,
//     RT_ECOMM 3, RT_ECLOSED 4) plus a message for rt_last_error on the
//     calling thread naming the node, peer, epoch and operation.
//   - RT_EINVAL leaves the node as it was; RT_ECOMM means the epoch's ring
//     is broken: the host reports the step as failed at the next
//     rt_boundary and continues in the epoch it returns.
//   - Buffers are the host's memory. fp32 buffers are reduced in place: the
//     Go side views them (unsafe.Slice over the C pointer) only until the
//     call returns, or for an asynchronous call until rt_wait returns, and
//     the host keeps them alive that long. fp16/bf16 buffers are widened
//     once into an fp32 scratch, reduced, and narrowed back once.
//   - A bucketer keeps its arena pointer until rt_free: the host keeps the
//     arena alive and in place that long.
//   - Handles are integers into one table per loaded library. That table
//     (theLib) is the only package-level variable: a C caller has nowhere
//     else to keep Go objects (cgo forbids handing Go pointers to C to
//     hold), and a shared library is loaded once per process.
package main

import "C"

func main() {} // required by -buildmode=c-shared; never run
