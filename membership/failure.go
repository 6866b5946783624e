package membership

import (
	"errors"
	"fmt"
	"sync"
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

// failer hands peers that gossip declared dead to the endpoint's FailPeer.
// memberlist reports deaths from its event path while it holds its node
// lock, so the report only records the peer; failLoop makes the calls.
type failer struct {
	ep   peerFailer // nil: the endpoint cannot fail peers; reports are dropped
	wake chan struct{}

	mu      sync.Mutex
	pending map[string]error
}

func newFailer(ep any) *failer {
	f := &failer{wake: make(chan struct{}, 1), pending: make(map[string]error)}
	f.ep, _ = ep.(peerFailer)
	return f
}

// report records that gossip declared peer id (at gossip address addr)
// dead. It never blocks.
func (f *failer) report(id, addr string) {
	if f.ep == nil {
		return
	}
	f.mu.Lock()
	f.pending[id] = fmt.Errorf("%w (gossip address %s)", ErrDeclaredDead, addr)
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
			m.log.Info("gossip declared peer dead: aborting its operations", "peer", id, "epoch", epoch, "cause", cause)
			m.fail.ep.FailPeer(id, cause)
		}
	}
}
