package membership

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"
)

// runsEpochAtLeast returns a live peer among ids that gossip shows
// active in an epoch numbered n or higher, or "".
func (m *Member) runsEpochAtLeast(ids []string, n uint64) string {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, id := range ids {
		if p := m.peers[id]; p != nil && p.Alive && p.State == StateActive && p.Epoch >= n {
			return id
		}
	}
	return ""
}

// promisedCommitted returns a member of the promised proposal that already
// runs its epoch (or a later one) while this node still waits for the
// commit, or "".
func (m *Member) promisedCommitted() string {
	a := &m.ag
	if a.promisedBy == "" || a.promisedBy == m.cfg.ID || a.promised == nil || a.promisedBase != a.epoch.Number {
		return ""
	}
	return m.runsEpochAtLeast(a.promised.Members, a.promisedN)
}

// onPropose acknowledges a proposal if it replaces this node's current
// epoch (or admits a node without one), carries a higher number than any
// promise, and no other proposal is promised: a node acknowledges at most
// one proposal per epoch it leaves. A promise ends when its proposer
// withdraws it, when a commit replaces the epoch, when gossip shows a
// member of the proposal in a later epoch, or when the proposer is lost,
// twice AckTimeout passed and no member of the proposal shows its epoch.
func (m *Member) onPropose(ctx context.Context, p *msg) {
	a := &m.ag
	reply := &msg{Kind: kindAck, Epoch: p.Epoch, Proposer: p.Proposer}
	same := a.promisedN == p.Epoch && a.promisedBy == p.Proposer
	held := a.promisedBy != "" && a.promisedBase == a.epoch.Number && !same
	if held && time.Since(a.promisedAt) > 2*m.cfg.AckTimeout && (a.suspects[a.promisedBy] || !m.alive(a.promisedBy)) &&
		(a.promised == nil || m.runsEpochAtLeast(a.promised.Members, a.promisedN) == "") {
		// The proposer is gone and no member of its proposal shows
		// that it committed: release the promise.
		held = false
	}
	if held && a.promised != nil && m.runsEpochAtLeast(a.promised.Members, a.promisedN+1) != "" {
		// The promised epoch is history: a later one runs, which
		// cannot include us since we acknowledged nothing since.
		held = false
	}
	ok := p.Epoch > a.epoch.Number &&
		(a.epoch.Number == 0 || p.Base == a.epoch.Number) &&
		(same || (p.Epoch > a.promisedN && !held))
	if ok {
		if !same {
			a.promisedN, a.promisedBy, a.promisedBase, a.promisedAt = p.Epoch, p.Proposer, a.epoch.Number, time.Now()
			a.promised = p
		}
		reply.Flags = flagOK
	} else {
		reply.Promised = max(a.promisedN, a.epoch.Number)
		reply.Source = a.promisedBy
		reply.Base = a.epoch.Number
	}
	a.seen = max(a.seen, p.Epoch)
	// Answer in the background: a proposer that does not read must not
	// stop this node's loop for AckTimeout.
	m.sendAsync(p.From, reply, m.cfg.AckTimeout)
}

// apply installs a committed epoch and runs the state sync it prescribes.
func (m *Member) apply(ctx context.Context, c *msg, cur *Step) (Outcome, bool, error) {
	a := &m.ag
	member := slices.Contains(c.Members, m.cfg.ID)
	if member && (a.promisedN != c.Epoch || a.promisedBy != c.Proposer) {
		// Not the proposal we acknowledged (we moved on to another):
		// ignore it; its members notice when we do not take part.
		m.log.Warn("ignoring commit we did not promise", "epoch", c.Epoch, "proposer", c.Proposer)
		return Outcome{}, false, nil
	}
	a.seen = max(a.seen, c.Epoch)
	a.lastCommit = c
	a.promisedN, a.promisedBy, a.promised = max(a.promisedN, c.Epoch), "", nil
	clear(a.reports)
	clear(a.consumed)
	clear(a.continued)
	clear(a.suspects)
	if !member {
		if a.leaving {
			m.log.Info("left", "epoch", c.Epoch)
			a.epoch = Epoch{}
			return Outcome{Epoch: Epoch{Number: c.Epoch, Members: c.Members}, Left: true, Step: cur.Done}, true, nil
		}
		m.log.Info("excluded from epoch: waiting for admission", "epoch", c.Epoch)
		a.epoch = Epoch{}
		m.setState(StateJoining, 0)
		return Outcome{}, false, nil
	}
	a.epoch = Epoch{Number: c.Epoch, Members: slices.Clone(c.Members)}
	a.held = a.epoch
	m.setState(StateActive, c.Epoch)
	m.log.Info("epoch committed", "epoch", c.Epoch, "members", len(c.Members), "source", c.Source, "targets", len(c.Targets))
	out := Outcome{Epoch: a.epoch, Changed: true, Step: cur.Done}
	if c.Source == "" || len(c.Targets) == 0 {
		return out, true, nil
	}
	var targets []string
	for _, t := range c.Targets {
		targets = append(targets, c.Members[t])
	}
	out.Sync = SyncOrder{Source: c.Source, Targets: targets}
	if m.cfg.Snapshot == nil {
		// Deferred sync: the caller transfers the state.
		if slices.Contains(targets, m.cfg.ID) {
			out.Step = c.Step
		}
		return out, true, nil
	}
	switch {
	case c.Source == m.cfg.ID:
		state, err := m.cfg.Snapshot()
		if err != nil {
			return Outcome{}, true, fmt.Errorf("membership: node %s: snapshot for epoch %d: %w", m.cfg.ID, c.Epoch, err)
		}
		errs := make([]error, len(targets))
		var wg sync.WaitGroup
		for i, t := range targets {
			wg.Go(func() { errs[i] = m.sendState(ctx, c.Epoch, t, state, m.cfg.ReportTimeout) })
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			// The targets notice too and report a failure.
			m.log.Warn("state sync", "epoch", c.Epoch, "err", err)
		}
	case slices.Contains(targets, m.cfg.ID):
		state, err := m.recvState(ctx, c.Epoch, c.Source, m.cfg.ReportTimeout)
		if err == nil {
			err = m.cfg.Restore(state)
		}
		if err != nil {
			// Not in sync: report a failed step in the new epoch.
			m.log.Warn("state sync failed", "epoch", c.Epoch, "source", c.Source, "err", err)
			cur.Err = err
			a.seq++
			if s := c.Source; s != m.cfg.ID {
				a.suspects[s] = true
			}
			return Outcome{}, false, nil
		}
		out.Restored = true
		out.Step = c.Step
		cur.Done, cur.NoState = c.Step, false
	}
	return out, true, nil
}
