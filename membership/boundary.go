package membership

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/ringtrain/ringtrain/membership/agree"
	"github.com/ringtrain/ringtrain/transport"
)

// Step is what the training loop tells Boundary about the step it just ran.
type Step struct {
	// Done is the number of steps applied to this node's state. A failed
	// step is not applied, so Done does not count it.
	Done uint64
	// Err is the step's error (its collective failed), nil if it completed.
	// A peer named by a transport.OpError wrapping ErrPeerLost is reported
	// as a suspect.
	Err error
	// Leave announces a graceful leave: the next epoch excludes this node
	// and Boundary returns Outcome.Left.
	Leave bool
	// NoState marks a node that holds no state yet (it must be synced).
	NoState bool
}

// Outcome is Boundary's answer: the epoch to run the next step in.
type Outcome struct {
	Epoch    Epoch
	Changed  bool // a new epoch was committed: rebuild the collective group
	Restored bool // Restore was called with a peer's state (eager sync)
	// Step is the number of steps applied to the state the epoch continues
	// from. For a sync target in deferred mode it is the source's step:
	// the state RecvState will deliver.
	Step uint64
	Left bool // this node left after announcing Leave: Close it
	// Sync is the state transfer the committed epoch prescribes (zero when
	// nobody syncs). Filled in both modes; in eager mode Boundary has
	// already run it, in deferred mode the caller runs SendState (on
	// Sync.Source) or RecvState (on each of Sync.Targets) before the
	// epoch's first collective.
	Sync SyncOrder
}

// SyncOrder names a state transfer: Source sends its state to Targets.
type SyncOrder struct {
	Source  string
	Targets []string
}

// Has reports whether id is one of the targets.
func (o SyncOrder) Has(id string) bool { return slices.Contains(o.Targets, id) }

// Held returns the last epoch this node applied (zero if none), as the
// agreement last persisted it: the trainer stores it in its checkpoint
// and passes it back as Config.Held after a restart (or keeps the whole
// HardState through Config.Persist and Config.Hard). Safe for concurrent
// use.
func (m *Member) Held() Epoch {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.held.clone()
}

// Epoch returns the epoch this node runs (zero while it waits to be
// admitted). Safe for concurrent use.
func (m *Member) Epoch() Epoch {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.active {
		return Epoch{}
	}
	return m.held.clone()
}

// Boundary is called by the training loop between steps (and once before
// the first step, with Done 0 and NoState for a node that has none). It
// returns the epoch the next step runs in. When membership changes (a
// newcomer is admitted, a member failed or leaves, a member is behind) a
// majority of the old epoch's members agreed on the new one before any
// Boundary returns it, every member returns the same member list, and
// members that were behind have restored the state of one that completed
// the latest step (eager sync) or are named in Outcome.Sync (deferred).
// A node without an epoch (newcomer, excluded, or from a partition's
// minority) blocks here until it is admitted.
//
// ctx bounds the whole call, state transfer included. Boundary must not be
// called concurrently with itself.
func (m *Member) Boundary(ctx context.Context, s Step) (Outcome, error) {
	r := agree.StepReport{Done: s.Done, Failed: s.Err != nil, Lost: lostPeers(s.Err), Leave: s.Leave, NoState: s.NoState}
	for {
		ao, err := m.await(ctx, r)
		if err != nil {
			return Outcome{}, fmt.Errorf("membership: node %s: boundary after step %d (epoch %d): %w", m.cfg.ID, s.Done, m.returned, err)
		}
		out := Outcome{Epoch: fromAgree(ao.Epoch), Changed: ao.Changed, Step: ao.Step, Left: ao.Left,
			Sync: SyncOrder{Source: ao.Sync.Source, Targets: slices.Clone(ao.Sync.Targets)}}
		if out.Left {
			m.log.Info("left", "epoch", out.Epoch.Number)
			return out, nil
		}
		if out.Epoch.Number != m.returned {
			// A Boundary that gave up (ctx) may have missed the change.
			out.Changed = true
		}
		m.returned = out.Epoch.Number
		if !ao.Changed {
			return out, nil
		}
		m.log.Info("epoch committed", "epoch", out.Epoch.Number, "members", len(out.Epoch.Members),
			"source", out.Sync.Source, "targets", len(out.Sync.Targets))
		if err := m.awaitRoster(ctx, out.Epoch); err != nil {
			return Outcome{}, err
		}
		if m.cfg.Snapshot == nil || out.Sync.Source == "" {
			return out, nil // nothing to move here, or the caller moves it
		}
		switch {
		case out.Sync.Source == m.cfg.ID:
			state, err := m.cfg.Snapshot()
			if err != nil {
				return Outcome{}, fmt.Errorf("membership: node %s: snapshot for epoch %d: %w", m.cfg.ID, out.Epoch.Number, err)
			}
			if err := m.SendState(ctx, out.Epoch.Number, out.Sync.Targets, state); err != nil {
				// The targets notice too and report a failure.
				m.log.Warn("state sync", "epoch", out.Epoch.Number, "err", err)
			}
		case out.Sync.Has(m.cfg.ID):
			state, err := m.RecvState(ctx, out.Epoch.Number, out.Sync.Source)
			if err == nil {
				err = m.cfg.Restore(state)
			}
			if err != nil {
				// Not in sync: the first step of the epoch fails here.
				m.log.Warn("state sync failed", "epoch", out.Epoch.Number, "source", out.Sync.Source, "err", err)
				r = agree.StepReport{Done: s.Done, Failed: true, Lost: lostPeers(err), Leave: s.Leave, NoState: s.NoState}
				continue
			}
			out.Restored = true
		}
		return out, nil
	}
}

// awaitRoster waits, at most FailureWait, until gossip has shown this node
// every member of e (OnRoster registered its address). A newcomer is
// admitted as soon as its join request reaches the coordinator, which can
// be before gossip reached every member: without the wait, a member could
// not connect the new ring and would fail a step the others wait in.
func (m *Member) awaitRoster(ctx context.Context, e Epoch) error {
	timer := time.NewTimer(m.cfg.FailureWait)
	defer timer.Stop()
	for {
		m.mu.Lock()
		var missing []string
		for _, id := range e.Members {
			if id != m.cfg.ID && !m.announced[id] {
				missing = append(missing, id)
			}
		}
		wake := m.announce
		m.mu.Unlock()
		if len(missing) == 0 {
			return nil
		}
		select {
		case <-wake:
		case <-timer.C:
			m.log.Warn("gossip has not shown members of the new epoch", "epoch", e.Number, "missing", missing)
			return nil // connecting the ring fails and reports it
		case <-ctx.Done():
			return fmt.Errorf("membership: node %s: epoch %d: waiting for gossip to show %v: %w", m.cfg.ID, e.Number, missing, ctx.Err())
		case <-m.ctx.Done():
			return ErrClosed
		}
	}
}

// await hands a boundary to the driver and waits for its outcome.
func (m *Member) await(ctx context.Context, r agree.StepReport) (agree.Outcome, error) {
	c := &call{report: r, done: make(chan callResult, 1)}
	select {
	case m.calls <- c:
	case <-ctx.Done():
		return agree.Outcome{}, ctx.Err()
	case <-m.ctx.Done():
		return agree.Outcome{}, ErrClosed
	}
	select {
	case res := <-c.done:
		return res.out, res.err
	case <-ctx.Done():
		return agree.Outcome{}, ctx.Err()
	case <-m.ctx.Done():
		return agree.Outcome{}, ErrClosed
	}
}

// lostPeers extracts the peer an error blames: a transport error that
// says the peer was lost.
func lostPeers(err error) []string {
	var op *transport.OpError
	if err == nil || !errors.As(err, &op) || op.Peer == "" {
		return nil
	}
	// Only a definite loss counts: a timeout blames whichever neighbour
	// a member waited on, often an innocent one further up the ring.
	if definiteLoss(op.Err) {
		return []string{op.Peer}
	}
	return nil
}

// definiteLoss reports whether err says a peer is gone: ErrPeerLost, and
// not a deadline that ran out (a dial or a wait that timed out may blame a
// slow peer, not a dead one).
func definiteLoss(err error) bool {
	return errors.Is(err, transport.ErrPeerLost) && !errors.Is(err, context.DeadlineExceeded)
}

// RequestLeave asks a node that is not yet a member of any epoch (waiting
// for the first epoch or for admission) to stop waiting: its Boundary
// returns Outcome.Left. Members leave by announcing Step.Leave at their
// next boundary instead. Safe to call from any goroutine, more than once.
func (m *Member) RequestLeave() {
	m.leaveOnce.Do(func() { close(m.leaveReq) })
}

func (m *Member) leaveRequested() bool {
	select {
	case <-m.leaveReq:
		return true
	default:
		return false
	}
}
