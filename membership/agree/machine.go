package agree

import (
	"slices"
)

// Config configures a Machine. Timers count Tick calls.
type Config struct {
	ID string
	// MinMembers is the size of the first epoch: the lowest fresh node
	// proposes it once this many fresh nodes are present. Two first
	// epochs cannot both form only if MinMembers is more than half of the
	// nodes that may start.
	MinMembers int
	// Hard is the durable state from before a restart (Ready.Hard as the
	// driver last persisted it); zero for a fresh node.
	Hard HardState

	ResendTicks  int // resend a report or join request (default 2)
	ReportTicks  int // wait for a live member that does not report (default 240)
	FailureTicks int // wait for the others once a failure is known (default 16)
	PhaseTicks   int // one prepare or accept phase (default 16)
	SettleTicks  int // the view stays unchanged before a first epoch (default 3)
	JoinTicks    int // a join request stays valid (default 48)

	legacy legacyRules // test builds only: the rules the defects came from
}

// legacyRules re-enable the old, defective rules so that regression
// schedules can show each defect; production code never sets them.
type legacyRules uint8

const (
	// legacySplit: a proposal needs reports from a majority of the base
	// but acceptance only from the new epoch's members.
	legacySplit legacyRules = 1 << iota
	// legacyBypass: a node that held an epoch may still form a first one.
	legacyBypass
	// legacyDropDup: a resent report that was answered is dropped.
	legacyDropDup
)

func (c *Config) defaults() {
	if c.MinMembers < 1 {
		c.MinMembers = 1
	}
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&c.ResendTicks, 2)
	def(&c.ReportTicks, 240)
	def(&c.FailureTicks, 16)
	def(&c.PhaseTicks, 16)
	def(&c.SettleTicks, 3)
	def(&c.JoinTicks, 48)
}

// HardState must survive a restart: the last epoch this node applied and
// its acceptor state for the round that replaces it. The driver persists
// Ready.Hard before it sends Ready.Msgs.
type HardState struct {
	Held      Epoch  // last applied epoch (zero: never held one)
	Made      *Value // the decided value that made Held (to tell members that missed it)
	Promised  Ballot // highest ballot promised for base Held.Number
	AccBallot Ballot // ballot of the accepted value
	Accepted  *Value // value accepted for base Held.Number, nil if none
	// Left: the decided successor of Held that excluded this node as it
	// left. A leaver may be the only node that knows that value was
	// decided; a restart must keep it lingering and resending it.
	Left *Value
	// Amnesiac: Held was learnt from a peer after this node lost its
	// durable state (a wiped disk), so its promises and acceptances for
	// Held are gone. It answers only rounds that need every member of
	// Held (FlagAll), and never proposes for Held itself.
	Amnesiac bool
}

func (h HardState) clone() HardState {
	h.Held.Members = slices.Clone(h.Held.Members)
	h.Accepted = h.Accepted.clone()
	h.Made = h.Made.clone()
	h.Left = h.Left.clone()
	return h
}

// PeerState is a peer's lifecycle state as gossip shows it.
type PeerState uint8

const (
	PeerJoining PeerState = iota + 1 // waiting to be admitted (or fresh)
	PeerActive                       // running its epoch
	PeerLeaving                      // announced a graceful leave
)

// Peer is one peer as gossip shows it.
type Peer struct {
	ID    string
	Alive bool
	State PeerState
	Epoch uint64 // its epoch (active) or the last it held (joining)
	Step  uint64 // steps applied to its state (joining nodes)
	// NoState: a joining node that holds no state yet (it cannot be the
	// source of a first epoch).
	NoState bool
	// Amnesiac: its Epoch was learnt after it lost its durable state
	// (HardState.Amnesiac): it does not count toward a majority.
	Amnesiac bool
}

// StepReport is what the training loop says at a step boundary.
type StepReport struct {
	Done    uint64   // steps applied to this node's state
	Failed  bool     // the step's collective failed
	Lost    []string // peers the transport said were lost
	Leave   bool     // leave gracefully at this boundary
	NoState bool     // this node holds no state yet
}

// SyncOrder names a state transfer of a committed epoch.
type SyncOrder struct {
	Source  string
	Targets []string
}

// Outcome answers a boundary.
type Outcome struct {
	Epoch   Epoch
	Changed bool   // a new epoch: rebuild the ring
	Left    bool   // this node left
	Step    uint64 // steps of the state the epoch continues from
	Sync    SyncOrder
}

// Ready is the machine's output since the last Advance.
type Ready struct {
	Hard    *HardState // persist before sending Msgs (nil: unchanged)
	Msgs    []Msg
	Outcome *Outcome // the pending boundary's answer
	Abort   []string // peers to abort collectives on (dead members)
}

// Machine is one node's agreement state machine. It is not safe for
// concurrent use; it never blocks, reads no clock and does no I/O.
type Machine struct {
	cfg    Config
	id     string
	now    int
	hard   HardState
	dirty  bool
	active bool // running hard.Held in this incarnation

	view    map[string]Peer
	viewIDs []string // view's keys, sorted
	viewAt  int
	// The highest epoch a live active peer runs (valid if anyActive):
	// derived from view when it changes, read on every input.
	maxActive uint64
	anyActive bool
	suspects  map[string]int // peer → tick it was suspected at

	// The pending boundary.
	pending    bool
	cur        StepReport
	leaving    bool
	seq        uint64
	boundaryAt int
	lastSend   int
	lastCoord  string
	stash      []Msg // commits that arrived between boundaries

	// A leaver excluded by leftBy stays until one of its members shows
	// it applied it (or lingerTicks pass): the leaver may be the only
	// node that knows the value was decided, and its vote may be needed
	// for any other value, so leaving at once can stall the survivors.
	leftBy *Value
	leftAt int

	// Coordinator.
	reports   map[string]Msg
	consumed  map[string]uint64
	continued map[string]uint64
	joinReq   map[string]joinReq
	repBuf    []Msg    // coordinate's scratch
	missBuf   []string // coordinate's scratch

	// Proposer.
	prop    *round
	maxN    uint64
	retryAt int
	tries   int

	// decided successors by base (bounded), to answer laggards.
	decided map[uint64]*Value

	local []Msg // messages to self, handled before an input returns
	out   Ready

	tap func(Msg) // test builds: sees every message sent, local ones too
}

type joinReq struct {
	at      int
	step    uint64
	noState bool
}

// New returns a machine for cfg.
func New(cfg Config) *Machine {
	cfg.defaults()
	m := &Machine{
		cfg:       cfg,
		id:        cfg.ID,
		hard:      cfg.Hard.clone(),
		view:      map[string]Peer{},
		suspects:  map[string]int{},
		reports:   map[string]Msg{},
		consumed:  map[string]uint64{},
		continued: map[string]uint64{},
		joinReq:   map[string]joinReq{},
		decided:   map[uint64]*Value{},
		lastSend:  -1 << 30,
		retryAt:   -1 << 30,
	}
	m.maxN = m.hard.Promised.N
	if v := m.hard.Left; v != nil {
		// Excluded before the restart: linger again (see leftBy), and
		// answer rounds for the held epoch with the decided value.
		m.leftBy, m.leftAt = v.clone(), 0
		m.remember(m.hard.Held.Number, v)
	}
	return m
}

// Held returns the last epoch this node applied.
func (m *Machine) Held() Epoch { return m.hard.Held }

// Amnesiac reports HardState.Amnesiac (gossip carries it to the peers).
func (m *Machine) Amnesiac() bool { return m.hard.Amnesiac }

// Active reports whether the node runs its held epoch.
func (m *Machine) Active() bool { return m.active }

// Pending reports whether a boundary waits for its outcome.
func (m *Machine) Pending() bool { return m.pending }

// HasReady reports whether Ready has anything.
func (m *Machine) HasReady() bool {
	return m.out.Hard != nil || len(m.out.Msgs) > 0 || m.out.Outcome != nil || len(m.out.Abort) > 0
}

// Ready returns the output accumulated since the last Advance.
func (m *Machine) Ready() Ready {
	if m.dirty {
		h := m.hard.clone()
		m.out.Hard = &h
		m.dirty = false
	}
	return m.out
}

// Advance acknowledges the last Ready: its output was handled.
func (m *Machine) Advance() { m.out = Ready{} }

func (m *Machine) send(mm Msg) {
	mm.From = m.id
	if m.tap != nil {
		m.tap(mm)
	}
	if mm.To == m.id {
		m.local = append(m.local, mm)
		return
	}
	if m.out.Msgs == nil {
		// Most inputs send to several peers: one allocation, not four.
		m.out.Msgs = make([]Msg, 0, min(len(m.view)+1, 16))
	}
	m.out.Msgs = append(m.out.Msgs, mm)
}

// run applies one input, then delivers messages to self and takes the
// actions the new state calls for, until nothing is left to do.
func (m *Machine) run(f func()) {
	f()
	for {
		for len(m.local) > 0 {
			mm := m.local[0]
			m.local = m.local[1:]
			m.handle(mm)
		}
		m.process()
		if len(m.local) == 0 {
			return
		}
	}
}

// Tick advances the machine's clock by one tick.
func (m *Machine) Tick() {
	m.run(func() {
		m.now++
		if p := m.prop; p != nil && m.now-p.startedAt > m.cfg.PhaseTicks {
			m.giveUp()
		}
	})
}

// Observe replaces the gossip view.
func (m *Machine) Observe(peers []Peer) { m.run(func() { m.observe(peers) }) }

func (m *Machine) observe(peers []Peer) {
	nv := make(map[string]Peer, len(peers))
	changed := len(peers) != len(m.view)
	for _, p := range peers {
		if p.ID == m.id {
			continue
		}
		if old, ok := m.view[p.ID]; !ok || old != p {
			changed = true
		}
		if old := m.view[p.ID]; m.active && old.Alive && !p.Alive && m.hard.Held.Has(p.ID) {
			m.out.Abort = append(m.out.Abort, p.ID)
		}
		nv[p.ID] = p
	}
	m.view = nv
	if changed {
		m.viewAt = m.now
	}
	m.viewIDs = sortedKeys(nv)
	m.maxActive, m.anyActive = 0, false
	for _, p := range nv {
		if p.Alive && p.State == PeerActive {
			m.maxActive, m.anyActive = max(m.maxActive, p.Epoch), true
		}
	}
}

// Suspect records that the transport lost peer.
func (m *Machine) Suspect(peer string) {
	m.run(func() {
		if peer != m.id && m.hard.Held.Has(peer) {
			m.suspects[peer] = m.now
		}
	})
}

// Boundary starts a step boundary: the training loop finished (or failed)
// a step and waits for Ready().Outcome.
func (m *Machine) Boundary(r StepReport) { m.run(func() { m.boundary(r) }) }

func (m *Machine) boundary(r StepReport) {
	r.Lost = slices.Clone(r.Lost)
	m.pending, m.cur, m.boundaryAt = true, r, m.now
	m.seq++
	m.lastSend = -1 << 30
	if r.Leave {
		m.leaving = true
	}
	for _, p := range r.Lost {
		if p != m.id && m.hard.Held.Has(p) {
			m.suspects[p] = m.now
		}
	}
	stash := m.stash
	m.stash = nil
	for _, c := range stash {
		m.onCommit(c)
	}
}

// suspected reports whether the transport lost id recently. A suspicion
// expires after 3×FailureTicks: a peer the transport lost but gossip
// still sees alive must not split the members between two coordinators
// for good.
func (m *Machine) suspected(id string) bool {
	at, ok := m.suspects[id]
	return ok && m.now-at <= 3*m.cfg.FailureTicks
}

func (m *Machine) alive(id string) bool {
	if id == m.id {
		return true
	}
	p, ok := m.view[id]
	return !ok || p.Alive
}

// coordinator is the lowest member of the held epoch that is neither dead
// to gossip, suspected, nor asking to be admitted (it restarted or was
// left behind, so it runs no epoch).
func (m *Machine) coordinator() string {
	for _, id := range m.hard.Held.Members {
		_, rejoin := m.joinReq[id]
		if id == m.id || (!m.suspected(id) && !rejoin && m.alive(id)) {
			return id
		}
	}
	return m.id
}

// activeAtLeast reports whether a live peer runs an epoch numbered n or more.
func (m *Machine) activeAtLeast(n uint64) bool {
	return m.anyActive && m.maxActive >= n
}

func (m *Machine) report() Msg {
	r := Msg{Kind: Report, Epoch: m.hard.Held.Number, Seq: m.seq, Step: m.cur.Done}
	if !m.active {
		r.Flags |= FlagJoin
	}
	if m.cur.Failed {
		r.Flags |= FlagFailed
	}
	if m.leaving {
		r.Flags |= FlagLeave
	}
	if m.cur.NoState {
		r.Flags |= FlagNoState
	}
	for p := range m.suspects {
		if m.suspected(p) {
			r.Lost = append(r.Lost, p)
		}
	}
	slices.Sort(r.Lost)
	return r
}

// process takes the actions the current state calls for.
func (m *Machine) process() {
	if !m.pending {
		return
	}
	if !m.active {
		if m.leaving {
			if m.leftBy == nil {
				m.finish(Outcome{Left: true, Step: m.cur.Done})
			} else if m.leftApplied() || m.now-m.leftAt > lingerTicks(m.cfg) {
				m.finish(Outcome{Epoch: m.leftBy.Epoch, Left: true, Step: m.cur.Done})
				m.leftBy = nil
			}
			return
		}
		m.tryForm()
		if m.pending && m.now-m.lastSend >= m.cfg.ResendTicks {
			// Ask the peers that run an epoch to admit us; when none
			// does (a whole epoch restarted), tell every peer, so that
			// members that missed the last commit learn it.
			m.lastSend = m.now
			r := m.report()
			any := m.activeAtLeast(0)
			// A leaving peer still runs its epoch until it has left (it
			// may even coordinate it): it must hear that we dropped out.
			for _, id := range m.viewIDs {
				if p := m.view[id]; p.Alive && (p.State == PeerActive || p.State == PeerLeaving || !any) {
					r.To = id
					m.send(r)
				}
			}
		}
		return
	}
	if m.now-m.boundaryAt > m.cfg.FailureTicks && m.activeAtLeast(m.hard.Held.Number+1) {
		m.abandon()
		m.process()
		return
	}
	coord := m.coordinator()
	if coord == m.id {
		m.coordinate()
		return
	}
	if m.now-m.lastSend >= m.cfg.ResendTicks || coord != m.lastCoord {
		m.lastSend, m.lastCoord = m.now, coord
		r := m.report()
		r.To = coord
		m.send(r)
	}
}

// lingerTicks bounds how long a leaver waits for the members of the epoch
// that excluded it to apply it.
func lingerTicks(c Config) int { return 4 * c.ReportTicks }

// leftApplied reports whether gossip shows a member of leftBy holding it
// (or a later epoch): that member tells the others that missed it.
func (m *Machine) leftApplied() bool {
	for _, id := range m.leftBy.Epoch.Members {
		if p, ok := m.view[id]; ok && p.Alive && p.Epoch >= m.leftBy.Epoch.Number {
			return true
		}
	}
	return false
}

func (m *Machine) finish(o Outcome) {
	m.pending = false
	m.out.Outcome = &o
}

// abandon drops the held epoch from this incarnation: the node waits to
// be admitted again. Its acceptor state for the held epoch stays.
func (m *Machine) abandon() {
	m.active = false
	m.resetRound()
}

func (m *Machine) resetRound() {
	clear(m.reports)
	clear(m.consumed)
	clear(m.continued)
	clear(m.suspects)
	clear(m.joinReq)
	m.prop = nil
	m.tries = 0
}

// Step feeds one received message.
func (m *Machine) Step(mm Msg) { m.run(func() { m.handle(mm) }) }

func (m *Machine) handle(mm Msg) {
	if mm.From != m.id {
		delete(m.suspects, mm.From) // it just spoke
	}
	switch mm.Kind {
	case Report:
		m.onReport(mm)
	case Continue:
		if m.pending && m.active && mm.Epoch == m.hard.Held.Number && mm.Seq == m.seq {
			m.finish(Outcome{Epoch: m.hard.Held, Step: m.cur.Done})
		}
	case Prepare, Accept:
		m.onAcceptor(mm)
	case Promise, Accepted, Nack:
		m.onProposerReply(mm)
	case Commit:
		m.onCommit(mm)
	}
}

func (m *Machine) onReport(r Msg) {
	held := m.hard.Held.Number
	if r.Flags&FlagJoin != 0 || r.Epoch == 0 {
		if v := m.hard.Made; v != nil && m.hard.Held.Has(r.From) && r.Epoch < held {
			// A member of our epoch that missed the commit making it
			// (we may not run it either: restarted, left behind).
			m.send(Msg{Kind: Commit, To: r.From, Base: held - 1, Value: v.clone()})
			return
		}
		if v := m.decided[r.Epoch]; v != nil && r.Epoch >= held && v.Epoch.Has(r.From) {
			// We learnt the successor of its epoch without being a member
			// (a proposer that adopted a value leaving it out): it missed
			// the commit, and we may be the only one that can resend it.
			m.send(Msg{Kind: Commit, To: r.From, Base: r.Epoch, Value: v.clone()})
			return
		}
		if m.active && m.hard.Held.Has(r.From) && r.Epoch < held {
			return // sent before it was admitted to our epoch
		}
		if v := m.leftBy; v != nil && v.Epoch.Has(r.From) && r.Epoch < v.Epoch.Number {
			// We leave, and it missed the commit of the epoch we left it.
			m.send(Msg{Kind: Commit, To: r.From, Base: held, Value: v.clone()})
			return
		}
		if _, had := m.joinReq[r.From]; !had && m.active && r.From != m.id && m.hard.Held.Has(r.From) && r.Epoch == held {
			// A member asks to join from our own epoch: it restarted, so
			// a step waiting on it cannot finish (gossip saw no death).
			m.out.Abort = append(m.out.Abort, r.From)
		}
		m.joinReq[r.From] = joinReq{at: m.now, step: r.Step, noState: r.Flags&FlagNoState != 0}
		return
	}
	if !m.active {
		if v := m.decided[r.Epoch]; v != nil {
			// It still runs the epoch we were excluded from (we may be a
			// leaver that it takes for its coordinator): tell it the
			// successor.
			m.send(Msg{Kind: Commit, To: r.From, Base: r.Epoch, Value: v.clone()})
		}
		return
	}
	switch {
	case r.Epoch == held:
		for _, p := range r.Lost {
			if p != m.id && m.hard.Held.Has(p) {
				m.suspects[p] = m.now
			}
		}
		delete(m.joinReq, r.From)
		old, ok := m.reports[r.From]
		if (!ok || old.Seq < r.Seq) && r.Seq > m.consumed[r.From] {
			m.reports[r.From] = r
		} else if r.Seq == m.consumed[r.From] && m.continued[r.From] == r.Seq && m.cfg.legacy&legacyDropDup == 0 {
			// Answered already: the continue was lost; answer again.
			m.send(Msg{Kind: Continue, To: r.From, Epoch: held, Seq: r.Seq})
		}
	case r.Epoch < held:
		// It missed the commit that moved us on.
		if v := m.decided[r.Epoch]; v != nil {
			m.send(Msg{Kind: Commit, To: r.From, Base: r.Epoch, Value: v.clone()})
		}
	case m.hard.Held.Has(r.From):
		// It runs an epoch we missed the commit of (and takes us for its
		// coordinator, so it waits on us): our report tells it to resend
		// that commit (the case above, on its side).
		rep := m.report()
		rep.To = r.From
		m.send(rep)
	}
}

func sortedKeys[K interface{ ~string | ~uint64 }, V any](mp map[K]V) []K {
	out := make([]K, 0, len(mp))
	for k := range mp {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
