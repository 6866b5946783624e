package membership

import (
	"context"
	"slices"
	"time"
)

// tryForm runs on a node without an epoch. If no live peer runs an epoch,
// the lowest joining node proposes the first one once MinMembers are
// present and the roster has settled; otherwise the node waits for an
// epoch's coordinator to admit it.
func (m *Member) tryForm(ctx context.Context, cur *Step) (Outcome, bool, error) {
	a := &m.ag
	if !cur.NoState {
		m.advertiseStep(cur.Done)
	}
	m.mu.Lock()
	cands := []string{m.cfg.ID}
	steps := map[string]uint64{m.cfg.ID: cur.Done}
	active := false
	for _, p := range m.peers {
		if !p.Alive {
			continue
		}
		if p.State == StateActive || p.Epoch > 0 {
			active = true
		}
		if p.State == StateJoining {
			cands = append(cands, p.ID)
			steps[p.ID] = p.Step
		}
	}
	settled := time.Since(m.rosterAt) >= m.cfg.SettleTime
	m.mu.Unlock()
	cands = ringOrder(cands)
	if active || cands[0] != m.cfg.ID || len(cands) < m.cfg.MinMembers || !settled {
		return Outcome{}, false, nil
	}
	if !heldMajority(a.held, cands) {
		// This node held an epoch: a first epoch without a majority of
		// its members could run beside the one they form.
		return Outcome{}, false, nil
	}
	if a.promisedBy != "" && a.promisedBy != m.cfg.ID {
		return Outcome{}, false, nil // we acknowledged another proposal
	}
	// Everyone starts from the state with the most steps (a resumed
	// checkpoint), the lowest ID among equals: the others are synced to it.
	src := 0
	for i, id := range cands {
		if steps[id] > steps[cands[src]] {
			src = i
		}
	}
	p := &msg{Kind: kindPropose, Epoch: max(a.seen, a.promisedN) + 1, Proposer: m.cfg.ID, Members: cands, Step: steps[cands[src]], Source: cands[src]}
	for i := range cands {
		if i != src {
			p.Targets = append(p.Targets, uint32(i))
		}
	}
	return m.propose(ctx, p, cands, cands, cur)
}

// heldMajority reports whether cands include a majority of held's members
// (always true for a node that never held an epoch).
func heldMajority(held Epoch, cands []string) bool {
	if held.Number == 0 {
		return true
	}
	n := 0
	for _, id := range held.Members {
		if slices.Contains(cands, id) {
			n++
		}
	}
	return 2*n > len(held.Members)
}

// requestJoin sends a join request (a report without an epoch) to every
// live peer that gossip says is active.
func (m *Member) requestJoin(ctx context.Context, cur *Step) {
	var to []string
	m.mu.Lock()
	for _, p := range m.peers {
		if p.Alive && p.State == StateActive {
			to = append(to, p.ID)
		}
	}
	m.mu.Unlock()
	if len(to) > 0 {
		m.sendAll(ctx, to, m.report(cur), m.cfg.ResendInterval)
	}
}

// coordinate runs one decision round as the coordinator of the current
// epoch: wait for the members' reports, then answer continue or propose
// the next epoch.
func (m *Member) coordinate(ctx context.Context, cur *Step, start time.Time) (Outcome, bool, error) {
	a := &m.ag
	base := a.epoch
	own := m.report(cur)
	own.From = m.cfg.ID
	a.reports[m.cfg.ID] = own

	failure := false
	var rep, missing []*msg
	var missingIDs []string
	for _, id := range base.Members {
		r := a.reports[id]
		dead := !m.alive(id)
		if dead || a.suspects[id] {
			failure = true
		}
		switch {
		case r != nil && r.Seq > a.consumed[id]:
			rep = append(rep, r)
			if r.Flags&flagFailed != 0 {
				failure = true
			}
		case !dead && !a.suspects[id]:
			missing = append(missing, r)
			missingIDs = append(missingIDs, id)
		}
	}
	if len(missing) > 0 {
		limit := m.cfg.ReportTimeout
		if failure {
			limit = m.cfg.FailureWait
		}
		if m.newerEpochElsewhere() {
			// The members we wait for already run a newer epoch
			// without us (gossip briefly called us dead, or we were
			// cut off): rejoin instead of waiting for them.
			m.abandon()
			return Outcome{}, false, nil
		}
		if time.Since(start) < limit {
			return Outcome{}, false, nil
		}
		failure = true
	}

	// Newcomers: nodes that asked to join recently, that gossip sees
	// alive, and that did not just fail to acknowledge a proposal. Gossip
	// state alone is not enough: a node's metadata may lag behind its
	// leave or its admission.
	var joiners []string
	fresh := 3 * 8 * m.cfg.ResendInterval
	for id, at := range a.joinReq {
		switch {
		case time.Since(at) > fresh || !m.alive(id):
			delete(a.joinReq, id)
		case !base.Has(id) && time.Now().After(a.joinBackoff[id]):
			joiners = append(joiners, id)
		}
	}
	slices.Sort(joiners)

	var stay []*msg
	maxDone := uint64(0)
	for _, r := range rep {
		if r.Flags&flagLeave == 0 {
			stay = append(stay, r)
			if r.Flags&flagNoState == 0 {
				maxDone = max(maxDone, r.Step)
			}
		}
	}
	uneven := slices.ContainsFunc(rep, func(r *msg) bool { return r.Step != rep[0].Step || r.Flags&flagNoState != 0 })
	if !failure && len(rep) == len(base.Members) && len(stay) == len(rep) && len(joiners) == 0 && !uneven {
		for _, r := range rep {
			a.consumed[r.From] = r.Seq
			a.continued[r.From] = r.Seq
			delete(a.reports, r.From)
			if r.From != m.cfg.ID {
				m.sendAsync(r.From, &msg{Kind: kindContinue, Epoch: base.Number, Seq: r.Seq}, m.cfg.AckTimeout)
			}
		}
		return Outcome{Epoch: base, Step: cur.Done}, true, nil
	}
	if 2*len(rep) <= len(base.Members) {
		// Minority: never form an epoch; rejoin if the majority moved on.
		if time.Since(start) > m.cfg.FailureWait && m.newerEpochElsewhere() {
			m.abandon()
		}
		return Outcome{}, false, nil
	}

	var members []string
	for _, r := range stay {
		members = append(members, r.From)
	}
	if len(missingIDs) > 0 {
		m.log.Warn("members did not report: excluding them", "epoch", base.Number, "missing", missingIDs)
	}
	members = ringOrder(append(members, joiners...))
	if a.promisedBy != "" && a.promisedBy != m.cfg.ID && a.promisedBase == base.Number {
		// We acknowledged someone else's proposal for this epoch: wait
		// for its commit (or its withdrawal).
		return Outcome{}, false, nil
	}
	p := &msg{Kind: kindPropose, Base: base.Number, Proposer: m.cfg.ID, Members: members, Step: maxDone}
	n := max(a.epoch.Number, a.seen, a.promisedN)
	for _, r := range rep {
		n = max(n, r.Promised)
	}
	p.Epoch = n + 1
	for _, r := range stay {
		if r.Flags&flagNoState == 0 && r.Step == maxDone && (p.Source == "" || r.From < p.Source) {
			p.Source = r.From
		}
	}
	for i, id := range members {
		r := a.reports[id]
		if slices.Contains(joiners, id) || r == nil || r.Step < maxDone || r.Flags&flagNoState != 0 {
			p.Targets = append(p.Targets, uint32(i))
		}
	}
	if p.Source == "" {
		p.Targets = nil
	}
	notify := slices.Clone(members)
	for _, r := range rep {
		notify = append(notify, r.From)
	}
	return m.propose(ctx, p, ringOrder(notify), base.Members, cur)
}

// propose runs one proposal: it goes to notify (members and reporters,
// leavers included); every member of p and a majority of the base epoch's
// members (leavers count: they promise, though they are not members of p)
// must acknowledge within AckTimeout; then the commit goes to notify and is
// applied here. On refusal or timeout the proposal is withdrawn and the
// caller retries later with a higher number.
func (m *Member) propose(ctx context.Context, p *msg, notify, base []string, cur *Step) (Outcome, bool, error) {
	a := &m.ag
	a.promisedN, a.promisedBy, a.promisedBase, a.promisedAt = p.Epoch, m.cfg.ID, a.epoch.Number, time.Now()
	a.promised = p
	a.seen = max(a.seen, p.Epoch)
	m.log.Debug("propose", "epoch", p.Epoch, "members", p.Members)
	acks := map[string]bool{m.cfg.ID: true}
	m.sendAll(ctx, notify, p, m.cfg.AckTimeout)
	timer := time.NewTimer(m.cfg.AckTimeout)
	defer timer.Stop()
	refused, behind := false, false
	for !refused && !(allIn(p.Members, acks) && majorityIn(base, acks)) {
		select {
		case <-ctx.Done():
			refused = true
		case <-timer.C:
			refused = true
		case mm := <-m.inbox:
			if mm.Kind == kindAck && mm.Epoch == p.Epoch && mm.Proposer == m.cfg.ID {
				if mm.Flags&flagOK != 0 {
					acks[mm.From] = true
				} else {
					a.seen = max(a.seen, mm.Promised)
					refused = true
					if mm.Base > a.epoch.Number && a.epoch.Number != 0 {
						behind = true // a member already runs a newer epoch
					}
				}
				continue
			}
			out, done, err := m.handle(ctx, mm, cur)
			if done || err != nil {
				return out, done, err
			}
			if a.promisedBy != m.cfg.ID || a.promisedN != p.Epoch {
				refused = true // we acknowledged a competing proposal
			}
		}
	}
	if refused {
		var missing []string
		for _, id := range p.Members {
			if !acks[id] {
				missing = append(missing, id)
			}
		}
		m.log.Info("proposal withdrawn", "epoch", p.Epoch, "unacknowledged", missing)
		for _, id := range missing {
			if !a.epoch.Has(id) {
				a.joinBackoff[id] = time.Now().Add(m.cfg.AckTimeout)
			}
		}
		if a.promisedBy == m.cfg.ID && a.promisedN == p.Epoch {
			a.promisedBy = ""
		}
		m.sendAll(m.ctx, notify, &msg{Kind: kindAbort, Epoch: p.Epoch, Proposer: m.cfg.ID}, m.cfg.ResendInterval)
		if behind {
			m.abandon()
		}
		return Outcome{}, false, nil
	}
	c := *p
	c.Kind = kindCommit
	m.sendAll(ctx, notify, &c, m.cfg.AckTimeout)
	return m.apply(ctx, &c, cur)
}

// majorityIn reports whether more than half of ids are in set.
func majorityIn(ids []string, set map[string]bool) bool {
	n := 0
	for _, id := range ids {
		if set[id] {
			n++
		}
	}
	return 2*n > len(ids)
}

func allIn(ids []string, set map[string]bool) bool {
	for _, id := range ids {
		if !set[id] {
			return false
		}
	}
	return true
}
