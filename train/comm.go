package train

import (
	"context"

	"github.com/ringtrain/ringtrain/collective"
)

// Comm is the communicator one step runs over: the members of the current
// membership epoch. *collective.Group satisfies it. Every member must make
// the same sequence of calls.
type Comm interface {
	Rank() int
	Size() int
	// Members lists the member IDs in rank order.
	Members() []string
	AllReduce(ctx context.Context, buf []float32, op collective.Op) error
	// AllReduceWire is AllReduce over a given wire dtype (the gradients';
	// statistics always travel as float32).
	AllReduceWire(ctx context.Context, buf []float32, op collective.Op, wire collective.DType) error
	// AllReduceWireAsync and Epoch make a Comm a collective.Reducer, on
	// which bucketed steps run.
	AllReduceWireAsync(ctx context.Context, buf []float32, op collective.Op, wire collective.DType) *collective.Handle
	Epoch() uint64
	// AllGather concatenates every member's send, in rank order, into recv
	// (len Size()·len(send)).
	AllGather(ctx context.Context, send, recv []float32) error
}

// Compile-time check that the public Group is a Comm.
var _ Comm = (*collective.Group)(nil)
