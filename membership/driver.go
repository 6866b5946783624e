package membership

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/ringtrain/ringtrain/membership/agree"
	"github.com/ringtrain/ringtrain/transport"
)

// ErrClosed is returned by a Boundary that was waiting when the member
// closed.
var ErrClosed = errors.New("membership: member closed")

// ErrDropped is the cause given to the steps (AbortOnDeath) and the
// endpoint (FailPeer) when a committed epoch leaves out a member that
// gossip had not declared dead.
var ErrDropped = errors.New("dropped from the epoch by agreement")

// call is one Boundary waiting for the agreement machine's outcome.
type call struct {
	report agree.StepReport
	done   chan callResult // buffered: the driver never blocks on it
}

type callResult struct {
	out agree.Outcome
	err error
}

// drive is the member's driver goroutine: the only one that touches the
// agreement machine. It feeds the machine received control messages,
// ticks, gossip's view when it changes, transport losses and the training
// loop's boundaries, and carries out each Ready: persist the hard state,
// queue the messages (never blocking on a peer), answer the waiting
// Boundary, abort the steps of dropped peers, then Advance.
func (m *Member) drive() {
	defer m.wg.Done()
	tick := time.NewTicker(m.cfg.tick())
	defer tick.Stop()
	var (
		pending  *call
		leaving  bool                              // this node announced a leave
		cur      = agree.StepReport{NoState: true} // as New advertises
		leaveReq = m.leaveReq
	)
	m.mach.Observe(m.agreeView())
	for {
		select {
		case <-m.ctx.Done():
			if pending != nil {
				pending.done <- callResult{err: ErrClosed}
			}
			return
		case mm := <-m.inbox:
			m.mach.Step(mm)
		case <-tick.C:
			m.mach.Tick()
		case <-m.viewDirty:
			m.mach.Observe(m.agreeView())
		case p := <-m.lost:
			m.mach.Suspect(p)
		case c := <-m.calls:
			if pending != nil {
				// Its caller gave up (ctx ended) and called again.
				pending.done <- callResult{err: fmt.Errorf("membership: node %s: boundary superseded by a later call", m.cfg.ID)}
			}
			pending, cur = c, c.report
			if m.leaveRequested() && !m.mach.Active() {
				cur.Leave = true // RequestLeave came first
			}
			leaving = leaving || cur.Leave
			m.mach.Boundary(cur)
		case <-leaveReq:
			// RequestLeave: a node that runs no epoch stops waiting; a
			// member leaves at its next boundary (Step.Leave) instead.
			leaveReq = nil
			if pending != nil && !m.mach.Active() {
				cur.Leave, leaving = true, true
				m.mach.Boundary(cur)
			}
		}
		pending = m.ready(pending)
		m.publishState(cur, leaving)
	}
}

// ready carries out the machine's Ready, if any, and returns the call
// still waiting (nil once answered).
func (m *Member) ready(pending *call) *call {
	if !m.mach.HasReady() {
		return pending
	}
	rd := m.mach.Ready()
	defer m.mach.Advance()
	if rd.Hard != nil {
		h := *rd.Hard
		var err error
		if m.cfg.Persist != nil {
			err = m.cfg.Persist(h)
		}
		m.mu.Lock()
		m.held = fromAgree(h.Held)
		m.mu.Unlock()
		if err != nil {
			// The messages vouch for a state that may not survive a
			// restart: drop them, as the network could have.
			err = fmt.Errorf("membership: node %s: persist agreement state (held epoch %d): %w", m.cfg.ID, h.Held.Number, err)
			m.log.Error("dropping agreement messages", "err", err)
			rd.Msgs = nil
			if pending != nil {
				pending.done <- callResult{err: err}
				pending = nil
			}
		}
	}
	for _, mm := range rd.Msgs {
		m.enqueue(mm)
	}
	if len(rd.Abort) > 0 {
		m.abortDropped(rd.Abort)
	}
	if o := rd.Outcome; o != nil && pending != nil {
		pending.done <- callResult{out: *o}
		pending = nil
	}
	m.mu.Lock()
	m.active = m.mach.Active()
	m.mu.Unlock()
	return pending
}

// publishState gossips this node's agreement state: active in its epoch,
// leaving, or joining with the last epoch it held and, while joining, the
// steps its state holds (a first epoch syncs from the node with the most).
// Unchanged metadata is not gossiped again.
func (m *Member) publishState(cur agree.StepReport, leaving bool) {
	st := StateJoining
	switch {
	case leaving:
		st = StateLeaving
	case m.mach.Active():
		st = StateActive
	}
	held, amnesiac := m.mach.Held().Number, m.mach.Amnesiac()
	m.publishMeta(func(meta *Meta) bool {
		next := *meta
		if meta.State == StateLeaving {
			st = StateLeaving // for good (Close sets it too)
		}
		next.State, next.Epoch, next.Amnesiac = st, held, amnesiac
		if st == StateJoining {
			next.Step, next.NoState = cur.Done, cur.NoState
		}
		changed := next != *meta
		*meta = next
		return changed
	})
}

// agreeView is gossip's view as the machine takes it.
func (m *Member) agreeView() []agree.Peer {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]agree.Peer, 0, len(m.peers))
	for _, p := range m.peers {
		var st agree.PeerState
		switch p.State {
		case StateJoining:
			st = agree.PeerJoining
		case StateActive:
			st = agree.PeerActive
		case StateLeaving:
			st = agree.PeerLeaving
		}
		out = append(out, agree.Peer{ID: p.ID, Alive: p.Alive, State: st, Epoch: p.Epoch, Step: p.Step, NoState: p.NoState, Amnesiac: p.Amnesiac})
	}
	slices.SortFunc(out, func(a, b agree.Peer) int { return strings.Compare(a.ID, b.ID) })
	return out
}

// viewChanged wakes the driver to Observe gossip's view again. It never
// blocks.
func (m *Member) viewChanged() {
	select {
	case m.viewDirty <- struct{}{}:
	default: // already pending; the driver reads the latest view
	}
}

// abortDropped aborts the steps that wait on peers the machine says are
// gone: members gossip declared dead, or members a committed epoch left
// out. A peer gossip declared dead was failed already (updatePeer); one
// that left gracefully is not failed at all.
func (m *Member) abortDropped(ids []string) {
	for _, id := range ids {
		m.mu.Lock()
		p := m.peers[id]
		if p != nil && (p.Left || !p.Alive) {
			m.mu.Unlock()
			continue
		}
		cause := &transport.OpError{Op: "agreement", Peer: id, Err: fmt.Errorf("%w: %w (epoch %d)", transport.ErrPeerLost, ErrDropped, m.held.Number)}
		for w := range m.watches {
			if slices.Contains(w.peers, id) {
				w.cancel(cause)
				delete(m.watches, w)
			}
		}
		alive := p != nil && p.Alive
		m.mu.Unlock()
		if !alive {
			// Gossip does not know it: the transport is all that can
			// still be blocked on it.
			m.fail.reportCause(id, cause)
		}
	}
}

func fromAgree(e agree.Epoch) Epoch {
	return Epoch{Number: e.Number, Members: slices.Clone(e.Members)}
}
