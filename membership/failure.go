package membership

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/ringtrain/ringtrain/transport"
)

// peerFailer is transport.PeerFailer, declared here so that membership
// works with endpoints that implement it and with those that do not (the
// one-method interface is the contract; see transport.PeerFailer).
type peerFailer interface {
	// FailPeer declares peer id dead: every operation blocked on it fails
	// at once with an error wrapping transport.ErrPeerLost, and its
	// connection is closed; a later dial may connect again.
	FailPeer(id string, cause error)
}

// ErrDeclaredDead is the cause membership gives the transport when gossip's
// failure detector declares a peer dead (its probes and the indirect probes
// through other members failed, and it did not refute the suspicion in
// time).
var ErrDeclaredDead = errors.New("gossip declared the peer dead")

// failer hands peers that gossip declared dead (or that agreement dropped
// while gossip did not know them) to the endpoint's FailPeer.
// memberlist reports deaths from its event path while it holds its node
// lock, so the report only records the peer; failLoop makes the calls.
type failer struct {
	eps  []peerFailer // empty: no endpoint can fail peers (the death is only logged)
	wake chan struct{}

	mu      sync.Mutex
	pending map[string]error
}

func newFailer(eps ...any) *failer {
	f := &failer{wake: make(chan struct{}, 1), pending: make(map[string]error)}
	for _, ep := range eps {
		if pf, ok := ep.(peerFailer); ok && pf != nil {
			f.eps = append(f.eps, pf)
		}
	}
	return f
}

// report records that gossip declared peer id (at gossip address addr)
// dead. It never blocks.
func (f *failer) report(id, addr string) {
	f.reportCause(id, fmt.Errorf("%w (gossip address %s)", ErrDeclaredDead, addr))
}

// reportCause records that peer id is gone for the given cause. It never
// blocks.
func (f *failer) reportCause(id string, cause error) {
	f.mu.Lock()
	f.pending[id] = cause
	f.mu.Unlock()
	select {
	case f.wake <- struct{}{}:
	default: // the loop is already woken; it takes every pending peer
	}
}

// take returns and clears the pending peers.
func (f *failer) take() map[string]error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.pending) == 0 {
		return nil
	}
	p := f.pending
	f.pending = make(map[string]error)
	return p
}

// failLoop fails the peers gossip declared dead, for the member's lifetime.
func (m *Member) failLoop() {
	defer m.wg.Done()
	for {
		select {
		case <-m.ctx.Done():
			return
		case <-m.fail.wake:
		}
		for id, cause := range m.fail.take() {
			m.mu.Lock()
			epoch := m.meta.Epoch
			m.mu.Unlock()
			if len(m.fail.eps) == 0 {
				m.log.Info("peer gone", "peer", id, "epoch", epoch, "cause", cause)
				continue
			}
			m.log.Info("peer gone: aborting its operations", "peer", id, "epoch", epoch, "cause", cause)
			for _, ep := range m.fail.eps {
				ep.FailPeer(id, cause)
			}
		}
	}
}

// deathWatch is one AbortOnDeath registration.
type deathWatch struct {
	peers  []string
	cancel context.CancelCauseFunc
}

// AbortOnDeath returns a context derived from ctx that is cancelled as
// soon as gossip declares one of peers dead (at once if gossip holds one
// dead now), with a cause that names the peer and wraps
// transport.ErrPeerLost and ErrDeclaredDead. The training loop runs each
// step under it with the epoch's members: a collective waits on a dead
// member not only through its own connection to it but through every
// member that waits on it, so the whole step is aborted, on every
// survivor, when the failure detector fires. Call the CancelFunc when the
// step is over.
func (m *Member) AbortOnDeath(ctx context.Context, peers []string) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancelCause(ctx)
	w := &deathWatch{peers: slices.Clone(peers), cancel: cancel}
	m.mu.Lock()
	for _, id := range w.peers {
		if p := m.peers[id]; p != nil && !p.Alive && !p.Left && id != m.cfg.ID {
			m.mu.Unlock()
			cancel(m.deathCause(id))
			return ctx, func() { cancel(context.Canceled) }
		}
	}
	m.watches[w] = struct{}{}
	m.mu.Unlock()
	return ctx, func() {
		m.mu.Lock()
		delete(m.watches, w)
		m.mu.Unlock()
		cancel(context.Canceled)
	}
}

// deathCause is the error a step aborted by the failure detector reports.
func (m *Member) deathCause(id string) error {
	return &transport.OpError{Op: "failure detector", Peer: id, Err: fmt.Errorf("%w: %w", transport.ErrPeerLost, ErrDeclaredDead)}
}

// abortWatchersLocked cancels the watches that include id; m.mu is held.
// Cancelling never blocks.
func (m *Member) abortWatchersLocked(id string) {
	for w := range m.watches {
		if slices.Contains(w.peers, id) {
			w.cancel(m.deathCause(id))
			delete(m.watches, w)
		}
	}
}
