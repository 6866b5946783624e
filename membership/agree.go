package membership

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

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
	Changed  bool   // a new epoch was committed: rebuild the collective group
	Restored bool   // Restore was called with a peer's state
	Step     uint64 // steps applied to the state the epoch continues from
	Left     bool   // this node left after announcing Leave: Close it
}

// agreement is the epoch protocol's state. Only Boundary's goroutine
// touches it.
type agreement struct {
	epoch Epoch
	seen  uint64 // highest epoch or proposal number heard of
	// The promise: the proposal this node acknowledged last. While it
	// is held (promisedBy != "") for the current epoch, no other proposal
	// replacing that epoch is acknowledged, and a commit is applied only
	// if it is the promised proposal.
	promisedN    uint64
	promisedBy   string
	promisedBase uint64
	promisedAt   time.Time
	lastCommit   *msg              // resent to members that missed it
	reports      map[string]*msg   // latest report per member (coordinator)
	consumed     map[string]uint64 // Seq of the last report answered per member
	suspects     map[string]bool   // members reported lost in this epoch
	seq          uint64            // this node's report counter
	leaving      bool
	// joinBackoff: newcomers that failed to acknowledge a proposal are
	// not proposed again before the time given.
	joinBackoff map[string]time.Time
	// joinReq: when each node without an epoch last asked to join.
	joinReq map[string]time.Time
}

func (a *agreement) init() {
	a.reports = make(map[string]*msg)
	a.consumed = make(map[string]uint64)
	a.suspects = make(map[string]bool)
	a.joinBackoff = make(map[string]time.Time)
	a.joinReq = make(map[string]time.Time)
}

// errNotMember reports a call that needs an epoch on a node without one.
var errNotMember = errors.New("membership: not a member of any epoch")

// Epoch returns the last committed epoch this node knows (zero if none).
// Only valid between Boundary calls, from the goroutine that calls them.
func (m *Member) Epoch() Epoch { return m.ag.epoch }

// Boundary is called by the training loop between steps (and once before
// the first step, with Done 0 and NoState for a node that has none). It
// returns the epoch the next step runs in. When membership changes (a
// newcomer is admitted, a member failed or leaves, a member is behind) every
// member of the new epoch acknowledges it before any Boundary returns it,
// and members that were behind have restored the state of one that
// completed the latest step. A node without an epoch (newcomer, excluded,
// or from a partition's minority) blocks here until it is admitted.
//
// ctx bounds the whole call, state transfer included.
func (m *Member) Boundary(ctx context.Context, s Step) (Outcome, error) {
	a := &m.ag
	if s.Leave && !a.leaving {
		a.leaving = true
		m.setState(StateLeaving, a.epoch.Number)
	}
	cur := s
	a.seq++
	for _, p := range lostPeers(s.Err) {
		if p != m.cfg.ID {
			a.suspects[p] = true
		}
	}
	tick := time.NewTicker(m.cfg.ResendInterval / 2)
	defer tick.Stop()
	var (
		lastSend  time.Time
		lastCoord string
		lastEpoch = a.epoch.Number
	)
	resend := m.cfg.ResendInterval // doubles while nobody answers
	start := time.Now()
	for {
		if err := ctx.Err(); err != nil {
			return Outcome{}, fmt.Errorf("membership: node %s: boundary after step %d in epoch %d: %w", m.cfg.ID, s.Done, a.epoch.Number, err)
		}
		var (
			out  Outcome
			done bool
			err  error
		)
		if a.epoch.Number != lastEpoch {
			// Abandoned or excluded (or admitted): speak up at once.
			lastEpoch, lastSend, resend = a.epoch.Number, time.Time{}, m.cfg.ResendInterval
		}
		switch {
		case a.epoch.Number == 0:
			if a.leaving {
				return Outcome{Left: true}, nil
			}
			out, done, err = m.tryForm(ctx, &cur)
			if !done && err == nil && time.Since(lastSend) >= resend {
				// Ask to be admitted: every active peer hears it, the
				// coordinator of the current epoch acts on it.
				if !lastSend.IsZero() {
					resend = min(2*resend, 8*m.cfg.ResendInterval)
				}
				lastSend = time.Now()
				m.requestJoin(ctx, &cur)
			}
		case m.coordinator() == m.cfg.ID:
			out, done, err = m.coordinate(ctx, &cur, start)
		case time.Since(lastSend) >= resend || m.coordinator() != lastCoord:
			coord := m.coordinator()
			if !lastSend.IsZero() && coord == lastCoord {
				resend = min(2*resend, 8*m.cfg.ResendInterval)
			}
			lastSend, lastCoord = time.Now(), coord
			if err := m.send(ctx, coord, m.report(&cur), m.cfg.ResendInterval); err != nil {
				m.log.Debug("report", "coordinator", coord, "err", err)
			}
			if time.Since(start) > m.cfg.FailureWait && m.newerEpochElsewhere() {
				m.abandon()
			}
		}
		if done || err != nil {
			return out, err
		}
		changed := m.Changed()
		select {
		case mm := <-m.inbox:
			out, done, err = m.handle(ctx, mm, &cur)
			if done || err != nil {
				return out, err
			}
		case p := <-m.lost:
			if a.epoch.Has(p) && p != m.cfg.ID {
				a.suspects[p] = true
			}
		case <-tick.C:
		case <-changed:
		case <-ctx.Done():
		}
	}
}

// lostPeers extracts the peers an error blames: a transport error that
// says the peer was lost or did not answer in time.
func lostPeers(err error) []string {
	var op *transport.OpError
	if err == nil || !errors.As(err, &op) || op.Peer == "" {
		return nil
	}
	// Only a definite loss counts: a timeout blames whichever neighbour
	// a member waited on, often an innocent one further up the ring.
	if errors.Is(op.Err, transport.ErrPeerLost) {
		return []string{op.Peer}
	}
	return nil
}

func (m *Member) report(s *Step) *msg {
	a := &m.ag
	r := &msg{Kind: kindReport, Epoch: a.epoch.Number, Promised: max(a.promisedN, a.seen), Step: s.Done, Seq: a.seq}
	if s.Err != nil {
		r.Flags |= flagFailed
	}
	if a.leaving {
		r.Flags |= flagLeave
	}
	if s.NoState {
		r.Flags |= flagNoState
	}
	for p := range a.suspects {
		r.Lost = append(r.Lost, p)
	}
	slices.Sort(r.Lost)
	return r
}

// alive reports whether gossip sees id alive (unknown IDs count as alive:
// gossip may not have told us yet).
func (m *Member) alive(id string) bool {
	if id == m.cfg.ID {
		return true
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	p := m.peers[id]
	return p == nil || p.Alive
}

// coordinator is the lowest member of the current epoch that is neither
// dead to gossip nor suspected; the epoch's leader while it lives.
func (m *Member) coordinator() string {
	for _, id := range m.ag.epoch.Members {
		if id == m.cfg.ID || (!m.ag.suspects[id] && m.alive(id)) {
			return id
		}
	}
	return m.cfg.ID
}

// newerEpochElsewhere reports whether a live peer advertises a newer epoch:
// this node was left behind (minority side of a partition, or excluded).
func (m *Member) newerEpochElsewhere() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, p := range m.peers {
		if p.Alive && p.State == StateActive && p.Epoch > m.ag.epoch.Number {
			return true
		}
	}
	return false
}

// abandon drops this node's epoch: it waits to be admitted again.
func (m *Member) abandon() {
	a := &m.ag
	m.log.Info("left behind: waiting for admission", "epoch", a.epoch.Number)
	a.seen = max(a.seen, a.epoch.Number)
	a.epoch = Epoch{}
	clear(a.reports)
	clear(a.consumed)
	clear(a.suspects)
	m.setState(StateJoining, 0)
}

// handle processes one control message in Boundary.
func (m *Member) handle(ctx context.Context, mm *msg, cur *Step) (Outcome, bool, error) {
	a := &m.ag
	delete(a.suspects, mm.From) // it just spoke: not lost
	switch mm.Kind {
	case kindReport:
		for _, p := range mm.Lost {
			if p != m.cfg.ID && a.epoch.Has(p) {
				a.suspects[p] = true
			}
		}
		a.seen = max(a.seen, mm.Promised)
		switch {
		case mm.Epoch == 0:
			// A join request from a node without an epoch.
			a.joinReq[mm.From] = time.Now()
		case mm.Epoch == a.epoch.Number && a.epoch.Number != 0:
			if old := a.reports[mm.From]; (old == nil || old.Seq < mm.Seq) && mm.Seq > a.consumed[mm.From] {
				a.reports[mm.From] = mm
			}
		case mm.Epoch < a.epoch.Number && a.lastCommit != nil:
			// It missed the commit that moved us on.
			go m.send(m.ctx, mm.From, a.lastCommit, m.cfg.AckTimeout)
		}
	case kindPropose:
		m.onPropose(ctx, mm)
	case kindAbort:
		if a.promisedN == mm.Epoch && a.promisedBy == mm.Proposer {
			a.promisedBy = "" // withdrawn: it will never commit
		}
	case kindCommit:
		if mm.Epoch > a.epoch.Number {
			return m.apply(ctx, mm, cur)
		}
	case kindContinue:
		if mm.Epoch == a.epoch.Number && mm.Seq == a.seq && a.epoch.Number != 0 {
			return Outcome{Epoch: a.epoch, Step: cur.Done}, true, nil
		}
	case kindAck:
		// An answer to a proposal no longer in progress.
	}
	return Outcome{}, false, nil
}

// onPropose acknowledges a proposal if it replaces this node's current
// epoch (or admits a node without one), carries a higher number than any
// promise, and no other proposal is promised: a node acknowledges at most
// one proposal per epoch it leaves. A promise ends when its proposer
// withdraws it, when its epoch is replaced, or when the proposer is lost
// and twice AckTimeout passed without a commit.
func (m *Member) onPropose(ctx context.Context, p *msg) {
	a := &m.ag
	reply := &msg{Kind: kindAck, Epoch: p.Epoch, Proposer: p.Proposer}
	same := a.promisedN == p.Epoch && a.promisedBy == p.Proposer
	held := a.promisedBy != "" && a.promisedBase == a.epoch.Number && !same
	if held && time.Since(a.promisedAt) > 2*m.cfg.AckTimeout && (a.suspects[a.promisedBy] || !m.alive(a.promisedBy)) {
		held = false
	}
	ok := p.Epoch > a.epoch.Number &&
		(a.epoch.Number == 0 || p.Base == a.epoch.Number) &&
		(same || (p.Epoch > a.promisedN && !held))
	if ok {
		if !same {
			a.promisedN, a.promisedBy, a.promisedBase, a.promisedAt = p.Epoch, p.Proposer, a.epoch.Number, time.Now()
		}
		reply.Flags = flagOK
	} else {
		reply.Promised = max(a.promisedN, a.epoch.Number)
		reply.Source = a.promisedBy
		reply.Base = a.epoch.Number
	}
	a.seen = max(a.seen, p.Epoch)
	if err := m.send(ctx, p.From, reply, m.cfg.AckTimeout); err != nil {
		m.log.Debug("ack", "proposer", p.From, "err", err)
	}
}

// tryForm runs on a node without an epoch. If no live peer runs an epoch,
// the lowest joining node proposes the first one once MinMembers are
// present and the roster has settled; otherwise the node waits for an
// epoch's coordinator to admit it.
func (m *Member) tryForm(ctx context.Context, cur *Step) (Outcome, bool, error) {
	a := &m.ag
	m.mu.Lock()
	cands := []string{m.cfg.ID}
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
		}
	}
	settled := time.Since(m.rosterAt) >= m.cfg.SettleTime
	m.mu.Unlock()
	cands = ringOrder(cands)
	if active || cands[0] != m.cfg.ID || len(cands) < m.cfg.MinMembers || !settled {
		return Outcome{}, false, nil
	}
	if a.promisedBy != "" && a.promisedBy != m.cfg.ID {
		return Outcome{}, false, nil // we acknowledged another proposal
	}
	p := &msg{Kind: kindPropose, Epoch: max(a.seen, a.promisedN) + 1, Proposer: m.cfg.ID, Members: cands, Step: cur.Done, Source: m.cfg.ID}
	for i := 1; i < len(cands); i++ {
		p.Targets = append(p.Targets, uint32(i))
	}
	return m.propose(ctx, p, cands, cur)
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
			delete(a.reports, r.From)
			if r.From != m.cfg.ID {
				go m.send(m.ctx, r.From, &msg{Kind: kindContinue, Epoch: base.Number, Seq: r.Seq}, m.cfg.AckTimeout)
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
	return m.propose(ctx, p, ringOrder(notify), cur)
}

// propose runs one proposal: every member of p must acknowledge within
// AckTimeout; then the commit goes to notify (members and reporters) and
// is applied here. On refusal or timeout the proposal is withdrawn and the
// caller retries later with a higher number.
func (m *Member) propose(ctx context.Context, p *msg, notify []string, cur *Step) (Outcome, bool, error) {
	a := &m.ag
	a.promisedN, a.promisedBy, a.promisedBase, a.promisedAt = p.Epoch, m.cfg.ID, a.epoch.Number, time.Now()
	a.seen = max(a.seen, p.Epoch)
	m.log.Debug("propose", "epoch", p.Epoch, "members", p.Members)
	acks := map[string]bool{m.cfg.ID: true}
	m.sendAll(ctx, p.Members, p, m.cfg.AckTimeout)
	timer := time.NewTimer(m.cfg.AckTimeout)
	defer timer.Stop()
	refused, behind := false, false
	for !refused && !allIn(p.Members, acks) {
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
		m.sendAll(m.ctx, p.Members, &msg{Kind: kindAbort, Epoch: p.Epoch, Proposer: m.cfg.ID}, m.cfg.ResendInterval)
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

func allIn(ids []string, set map[string]bool) bool {
	for _, id := range ids {
		if !set[id] {
			return false
		}
	}
	return true
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
	a.promisedN, a.promisedBy = max(a.promisedN, c.Epoch), ""
	clear(a.reports)
	clear(a.consumed)
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
	switch {
	case c.Source == m.cfg.ID:
		state, err := m.cfg.Snapshot()
		if err != nil {
			return Outcome{}, true, fmt.Errorf("membership: node %s: snapshot for epoch %d: %w", m.cfg.ID, c.Epoch, err)
		}
		errs := make([]error, len(targets))
		var wg sync.WaitGroup
		for i, t := range targets {
			wg.Go(func() { errs[i] = m.sendState(ctx, c.Epoch, t, state) })
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
