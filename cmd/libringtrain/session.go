package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"sync"

	"github.com/ringtrain/ringtrain/collective"
	"github.com/ringtrain/ringtrain/node"
)

// Sync roles a boundary hands the host.
const (
	roleNone = 0
	roleSend = 1 // this node must call rt_state_send with its state
	roleRecv = 2 // this node must call rt_state_recv and install the state
)

// boundary is what rt_boundary reports.
type boundary struct {
	Epoch   uint64
	Step    uint64
	Rank    int
	Size    int
	Role    int
	Changed bool
	Left    bool
	Members []string
}

// session is one node.Node in deferred sync mode (Boundary names the
// transfer, the host runs it with rt_state_send/recv): the host serialises
// its state only on the one member that must send it, and only when a
// member is behind.
type session struct {
	n    *node.Node
	log  *slog.Logger
	wire collective.DType // wire dtype of fp32 all-reduces
	// ctx bounds every call of this node; close cancels it, which ends a
	// boundary still waiting for admission.
	ctx    context.Context
	cancel context.CancelFunc

	mu     sync.Mutex // guards the fields below
	g      *collective.Group
	last   boundary
	closed bool
	// ectx bounds the epoch's collectives: gossip declaring one of its
	// members dead cancels it (node.AbortOnDeath), so an operation blocked
	// on that peer, directly or through a live neighbour, fails at once.
	ectx    context.Context
	ecancel context.CancelFunc
}

func startSession(ctx context.Context, parent context.Context, cfg settings) (*session, error) {
	level := map[string]slog.Level{"debug": slog.LevelDebug, "info": slog.LevelInfo, "warn": slog.LevelWarn, "error": slog.LevelError}[cfg.LogLevel]
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	wire, err := collective.ParseDType(cfg.Wire)
	if err != nil {
		return nil, fmt.Errorf("%w: wire-dtype: %w", errInvalid, err)
	}
	nc := cfg.Node
	nc.Logger = log
	// Snapshot and Restore stay nil: deferred sync.
	n, err := node.Start(ctx, nc)
	if err != nil {
		return nil, err
	}
	s := &session{n: n, log: log.With("node", n.ID()), wire: wire}
	s.ctx, s.cancel = context.WithCancel(parent)
	return s, nil
}

// boundaryCall runs node.Boundary and records its outcome.
func (s *session) boundaryCall(step node.Step) (boundary, error) {
	nb, err := s.n.Boundary(s.ctx, step)
	if err != nil {
		return boundary{}, err
	}
	b := boundary{Epoch: nb.Epoch, Step: nb.Step, Rank: nb.Rank, Size: nb.Size, Changed: nb.Changed, Left: nb.Left, Members: nb.Members}
	switch id := s.n.ID(); {
	case len(nb.Sync.Targets) == 0:
	case nb.Sync.Source == id:
		b.Role = roleSend
	case nb.Sync.Has(id):
		b.Role = roleRecv
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.last, s.g = b, nb.Group
	if nb.Changed || s.ectx == nil {
		if s.ecancel != nil {
			s.ecancel()
		}
		s.ectx, s.ecancel = s.n.AbortOnDeath(s.ctx, nb.Members)
	}
	return b, nil
}

// comm wraps a failed operation's error for the host, adding which peer
// gossip declared dead when that is what ended it.
func (s *session) comm(ctx context.Context, err error) error {
	if err != nil && ctx.Err() != nil && s.ctx.Err() == nil {
		err = fmt.Errorf("%w (aborted: %w)", err, context.Cause(ctx))
	}
	return comm(err)
}

// wireFor is the wire dtype of an all-reduce of a buffer of dtype dt: a
// 16-bit buffer travels in its own format (its precision is all there is),
// an fp32 buffer in the node's wire-dtype.
func (s *session) wireFor(dt dtype) collective.DType {
	if dt != fp32 {
		return collective.DType(dt)
	}
	return s.wire
}

// group returns the current epoch's group and the context its operations
// run under.
func (s *session) group(op string) (*collective.Group, context.Context, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, nil, fmt.Errorf("%w: node %s: %s: the node is closed", errClosed, s.n.ID(), op)
	}
	if s.g == nil {
		return nil, nil, fmt.Errorf("node %s: %s: no epoch to run it in (call rt_boundary first; last epoch %d)", s.n.ID(), op, s.last.Epoch)
	}
	return s.g, s.ectx, nil
}

func (s *session) close() error {
	s.cancel() // ends a boundary still waiting
	s.mu.Lock()
	s.closed = true
	s.g = nil
	if s.ecancel != nil {
		s.ecancel()
	}
	s.mu.Unlock()
	if err := s.n.Close(); err != nil {
		// Typically memberlist's leave broadcast timing out when the peers
		// are gone already: nothing the host can act on.
		s.log.Info("close", "err", err)
	}
	return nil
}
