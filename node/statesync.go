package node

import (
	"context"
	"errors"
	"fmt"
	"slices"
)

// ErrNoSyncRole is wrapped by SendState and RecvState when the last
// boundary gave this node no such part in its sync order (or the node was
// started with Snapshot and Restore, and Boundary moved the state itself).
var ErrNoSyncRole = errors.New("no such role in this epoch's state sync")

// SendState sends state to the targets of the last boundary's sync order;
// the node must be its source, in deferred mode. Call it before the
// epoch's first collective: the targets wait for it there. ctx bounds the
// transfer (each chunk also has membership's report timeout). The error
// names every target that failed; they notice too and report a failed
// step at the next boundary.
func (n *Node) SendState(ctx context.Context, state []byte) error {
	b, err := n.syncRole("send state", func(b Boundary) bool { return b.Sync.Source == n.cfg.ID && len(b.Sync.Targets) > 0 })
	if err != nil {
		return err
	}
	if err := n.mem.SendState(ctx, b.Epoch, b.Sync.Targets, state); err != nil {
		return fmt.Errorf("node %s: epoch %d: send state to %v: %w", n.cfg.ID, b.Epoch, b.Sync.Targets, err)
	}
	return nil
}

// RecvState receives the state of the last boundary's sync order from its
// source; the node must be one of its targets, in deferred mode. The
// caller installs the state before the epoch's first collective.
func (n *Node) RecvState(ctx context.Context) ([]byte, error) {
	b, err := n.syncRole("receive state", func(b Boundary) bool { return b.Sync.Has(n.cfg.ID) })
	if err != nil {
		return nil, err
	}
	state, err := n.mem.RecvState(ctx, b.Epoch, b.Sync.Source)
	if err != nil {
		return nil, fmt.Errorf("node %s: epoch %d: receive state from %s: %w", n.cfg.ID, b.Epoch, b.Sync.Source, err)
	}
	return state, nil
}

// syncRole returns the last boundary if has says this node plays the role.
func (n *Node) syncRole(op string, has func(Boundary) bool) (Boundary, error) {
	n.mu.Lock()
	b := n.cur
	n.mu.Unlock()
	switch {
	case !n.deferred():
		return b, fmt.Errorf("node %s: epoch %d: %s: %w (Snapshot and Restore are set: Boundary syncs)", n.cfg.ID, b.Epoch, op, ErrNoSyncRole)
	case b.Group == nil || !has(b):
		return b, fmt.Errorf("node %s: epoch %d: %s: %w (source %q, targets %v)", n.cfg.ID, b.Epoch, op, ErrNoSyncRole, b.Sync.Source, slices.Clone(b.Sync.Targets))
	}
	return b, nil
}
