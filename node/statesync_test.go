package node_test

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ringtrain/ringtrain/collective"
	"github.com/ringtrain/ringtrain/node"
)

// replica is a toy training loop over a node in deferred-sync mode: its
// state is a step count and a running sum of all-reduced values, moved by
// SendState/RecvState like a framework's parameters.
type replica struct {
	n      *node.Node
	step   uint64
	sum    float32
	synced int // state transfers received
	sizes  []int
	// progress is step, for the test's goroutine to watch.
	progress atomic.Uint64
}

func (r *replica) encode() []byte {
	b := binary.LittleEndian.AppendUint64(nil, r.step)
	return binary.LittleEndian.AppendUint32(b, math.Float32bits(r.sum))
}

func (r *replica) decode(b []byte) error {
	if len(b) != 12 {
		return fmt.Errorf("state of %d bytes", len(b))
	}
	r.step, r.sum = binary.LittleEndian.Uint64(b), math.Float32frombits(binary.LittleEndian.Uint32(b[8:]))
	return nil
}

// run steps until 5 steps after the first epoch of want members: every
// member sees that epoch at the same boundary, so all stop together.
func (r *replica) run(ctx context.Context, want int, noState bool) error {
	s := node.Step{NoState: noState}
	var stopAt uint64
	for {
		b, err := r.n.Boundary(ctx, s)
		if err != nil {
			return err
		}
		switch id := r.n.ID(); {
		case b.Sync.Source == id && len(b.Sync.Targets) > 0:
			err = r.n.SendState(ctx, r.encode())
		case b.Sync.Has(id):
			var st []byte
			if st, err = r.n.RecvState(ctx); err == nil {
				err = r.decode(st)
				r.synced++
			}
		}
		if err != nil {
			return err
		}
		if b.Size == want && stopAt == 0 {
			stopAt = b.Step + 5
		}
		if stopAt != 0 && r.step >= stopAt {
			return nil
		}
		buf := []float32{1}
		if err := b.Group.AllReduce(ctx, buf, collective.Sum); err != nil {
			return err
		}
		r.sum += buf[0]
		r.step++
		r.progress.Store(r.step)
		r.sizes = append(r.sizes, b.Size)
		s = node.Step{Done: r.step}
	}
}

// TestDeferredSyncLateJoiner: two nodes train; a third joins mid-run with
// no state, receives the source's state through SendState/RecvState once,
// and all three end with the same step and sum.
func TestDeferredSyncLateJoiner(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	nodes := startNodes(ctx, t, 2, nil)
	reps := []*replica{{n: nodes[0]}, {n: nodes[1]}}
	errs := make([]error, 3)
	var wg sync.WaitGroup
	for i, r := range reps {
		wg.Go(func() { errs[i] = r.run(ctx, 3, false) })
	}
	// The newcomer joins once the others have trained a little.
	for deadline := time.Now().Add(30 * time.Second); ; {
		if time.Now().After(deadline) {
			t.Fatal("no progress before the newcomer")
		}
		if err := ctx.Err(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(50 * time.Millisecond)
		if reps[0].progress.Load() >= 3 {
			break
		}
	}
	late, err := node.Start(ctx, node.Config{ID: "n9", Seeds: []string{nodes[0].GossipAddr()}, Secret: []byte("the node test cluster secret"), Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { late.Close() })
	lr := &replica{n: late}
	reps = append(reps, lr)
	wg.Go(func() { errs[2] = lr.run(ctx, 3, true) })
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	// n1 is synced from n0 in the first epoch (equal steps: the lowest
	// ID is the source), the newcomer when it is admitted.
	if lr.synced != 1 || reps[0].synced != 0 || reps[1].synced != 1 {
		t.Errorf("transfers received: %d %d %d, want 0 1 1", reps[0].synced, reps[1].synced, lr.synced)
	}
	for _, r := range reps {
		if r.step != reps[0].step || r.sum != reps[0].sum {
			t.Errorf("%s: step %d sum %g; %s: step %d sum %g", r.n.ID(), r.step, r.sum, reps[0].n.ID(), reps[0].step, reps[0].sum)
		}
	}
	// Every step summed one per member: the sum counts member-steps.
	var want float32
	for _, s := range reps[0].sizes {
		want += float32(s)
	}
	if reps[0].sum != want || len(lr.sizes) != 5 {
		t.Errorf("sum %g, want %g; newcomer ran %d steps, want 5", reps[0].sum, want, len(lr.sizes))
	}
	t.Logf("%d steps; sizes %v", reps[0].step, reps[0].sizes)
	// The last boundary ordered no transfer: neither role is this node's.
	if err := late.SendState(ctx, lr.encode()); !errors.Is(err, node.ErrNoSyncRole) || !strings.Contains(err.Error(), "node n9: epoch") {
		t.Errorf("SendState without an order: %v", err)
	}
	if _, err := late.RecvState(ctx); !errors.Is(err, node.ErrNoSyncRole) {
		t.Errorf("RecvState without an order: %v", err)
	}
}
