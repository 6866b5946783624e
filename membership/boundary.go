package membership

import (
	"context"
	"errors"
	"fmt"
	"slices"
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
	promised     *msg              // the promised proposal, to recognise its commit
	lastCommit   *msg              // resent to members that missed it
	reports      map[string]*msg   // latest report per member (coordinator)
	consumed     map[string]uint64 // Seq of the last report answered per member
	continued    map[string]uint64 // Seq of the last report answered "continue"
	// held is the last epoch this node applied (from Config.Held across
	// restarts): a node that held one never forms a first epoch without a
	// majority of that epoch's members among the candidates.
	held     Epoch
	suspects map[string]bool // members reported lost in this epoch
	seq      uint64          // this node's report counter
	leaving  bool
	// joinBackoff: newcomers that failed to acknowledge a proposal are
	// not proposed again before the time given.
	joinBackoff map[string]time.Time
	// joinReq: when each node without an epoch last asked to join.
	joinReq map[string]time.Time
}

func (a *agreement) init() {
	a.reports = make(map[string]*msg)
	a.consumed = make(map[string]uint64)
	a.continued = make(map[string]uint64)
	a.suspects = make(map[string]bool)
	a.joinBackoff = make(map[string]time.Time)
	a.joinReq = make(map[string]time.Time)
}

// Held returns the last epoch this node applied (zero if none): the
// trainer stores it in its checkpoint and passes it back as Config.Held
// after a restart. Only valid between Boundary calls, from the goroutine
// that calls them.
func (m *Member) Held() Epoch { return m.ag.held }

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
		lastQuery time.Time
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
		if q := m.promisedCommitted(); q != "" && time.Since(lastQuery) >= m.cfg.ResendInterval {
			// A member of the proposal we promised already runs its
			// epoch: its commit to us was lost. Our stale report makes
			// it resend the commit.
			lastQuery = time.Now()
			if err := m.send(ctx, q, m.report(&cur), m.cfg.ResendInterval); err != nil {
				m.log.Debug("commit query", "peer", q, "err", err)
			}
		}
		switch {
		case a.epoch.Number == 0:
			if a.leaving || m.leaveRequested() {
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
		}
		if a.epoch.Number != 0 && m.coordinator() != m.cfg.ID {
			// A live peer runs a newer epoch. Every member of a
			// committed epoch acknowledged it, so if this node never
			// promised that number it is not a member (a frozen peer
			// that woke, a healed cut): rejoin at once. Otherwise its
			// commit may still be on the way: wait FailureWait.
			if n := m.newestEpochElsewhere(); n > 0 && (a.promisedN < n || time.Since(start) > m.cfg.FailureWait) {
				m.abandon()
			}
		}
		if done || err != nil {
			return out, err
		}
		changed := m.Changed()
		var leaveReq <-chan struct{}
		if a.epoch.Number == 0 {
			leaveReq = m.leaveReq // a member leaves at its next boundary instead
		}
		select {
		case <-leaveReq:
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
func (m *Member) newerEpochElsewhere() bool { return m.newestEpochElsewhere() > 0 }

// newestEpochElsewhere returns the highest epoch number a live active peer
// advertises above this node's, or 0 if none does.
func (m *Member) newestEpochElsewhere() uint64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	var n uint64
	for _, p := range m.peers {
		if p.Alive && p.State == StateActive && p.Epoch > m.ag.epoch.Number {
			n = max(n, p.Epoch)
		}
	}
	return n
}

// abandon drops this node's epoch: it waits to be admitted again.
func (m *Member) abandon() {
	a := &m.ag
	m.log.Info("left behind: waiting for admission", "epoch", a.epoch.Number)
	a.seen = max(a.seen, a.epoch.Number)
	a.epoch = Epoch{}
	clear(a.reports)
	clear(a.consumed)
	clear(a.continued)
	clear(a.suspects)
	m.setState(StateJoining, 0)
}

// handle processes one control message in Boundary.
func (m *Member) handle(ctx context.Context, mm *msg, cur *Step) (Outcome, bool, error) {
	a := &m.ag
	delete(a.suspects, mm.From) // it just spoke: not lost
	switch mm.Kind {
	case kindReport:
		// Only a member's report for the current epoch says something
		// about this epoch's peers. A report for an older epoch comes
		// from a node that was dropped (a frozen peer that woke, a cut
		// that healed): the peers it lost while out are alive to us,
		// and taking its word would drop a healthy member.
		if mm.Epoch == a.epoch.Number && a.epoch.Number != 0 && a.epoch.Has(mm.From) {
			for _, p := range mm.Lost {
				if p != m.cfg.ID && a.epoch.Has(p) {
					a.suspects[p] = true
				}
			}
		}
		a.seen = max(a.seen, mm.Promised)
		switch {
		case mm.Epoch == 0:
			// A join request from a node without an epoch, or a
			// newcomer that missed the commit admitting it.
			a.joinReq[mm.From] = time.Now()
			if a.lastCommit != nil && slices.Contains(a.lastCommit.Members, mm.From) && a.epoch.Number == a.lastCommit.Epoch {
				m.sendAsync(mm.From, a.lastCommit, m.cfg.AckTimeout)
			}
		case mm.Epoch == a.epoch.Number && a.epoch.Number != 0:
			if old := a.reports[mm.From]; (old == nil || old.Seq < mm.Seq) && mm.Seq > a.consumed[mm.From] {
				a.reports[mm.From] = mm
			} else if mm.Seq == a.consumed[mm.From] && a.continued[mm.From] == mm.Seq {
				// A resent report we already answered with "continue":
				// the answer was lost, so answer it again.
				m.sendAsync(mm.From, &msg{Kind: kindContinue, Epoch: a.epoch.Number, Seq: mm.Seq}, m.cfg.AckTimeout)
			}
		case mm.Epoch < a.epoch.Number && a.lastCommit != nil:
			// It missed the commit that moved us on.
			m.sendAsync(mm.From, a.lastCommit, m.cfg.AckTimeout)
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
