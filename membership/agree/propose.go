package agree

import (
	"slices"
)

// round is one ballot of the agreement on Base's successor.
type round struct {
	base      uint64
	ballot    Ballot
	acceptors []string
	all       bool // every acceptor must answer (a first epoch)
	cands     []string
	phase     int // 1: prepare, 2: accept
	promises  map[string]Msg
	accepted  map[string]bool
	nacks     map[string]bool
	value     *Value
	notify    []string
	startedAt int
}

// flags are the round's prepare and accept flags.
func (p *round) flags() uint8 {
	if p.all {
		return FlagAll
	}
	return 0
}

func (p *round) quorum(n int) bool {
	if p.all {
		return n == len(p.acceptors)
	}
	return 2*n > len(p.acceptors)
}

// coordinate runs the held epoch's decision at a boundary on its
// coordinator: wait for the members' reports, then answer continue or
// start a round for the successor.
func (m *Machine) coordinate() {
	base := m.hard.Held
	own := m.report()
	own.From = m.id
	m.reports[m.id] = own

	failure := false
	// Scratch kept on the machine: this runs on every input of the
	// coordinator and mostly returns early, waiting for reports.
	rep, missing := m.repBuf[:0], m.missBuf[:0]
	defer func() { m.repBuf, m.missBuf = rep[:0], missing[:0] }()
	rejoining := 0
	for _, id := range base.Members {
		r, ok := m.reports[id]
		ok = ok && r.Seq > m.consumed[id]
		_, rejoin := m.joinReq[id] // restarted or left behind: a joiner now
		if rejoin && id != m.id {
			rejoining++
			failure = true
			continue
		}
		dead := !m.alive(id) || m.suspected(id)
		if dead {
			failure = true
		}
		switch {
		case ok:
			rep = append(rep, r)
			if r.Flags&FlagFailed != 0 {
				failure = true
			}
		case !dead:
			missing = append(missing, id)
		}
	}
	if len(missing) > 0 {
		limit := m.cfg.ReportTicks
		if failure {
			limit = m.cfg.FailureTicks
		}
		if m.now-m.boundaryAt < limit {
			return
		}
		failure = true
	}
	var joiners []string
	for _, id := range sortedKeys(m.joinReq) {
		if j := m.joinReq[id]; m.now-j.at > m.cfg.JoinTicks || !m.alive(id) {
			delete(m.joinReq, id)
			continue
		}
		joiners = append(joiners, id)
	}
	var stay []Msg
	for _, r := range rep {
		if r.Flags&FlagLeave == 0 {
			stay = append(stay, r)
		}
	}
	uneven := slices.ContainsFunc(rep, func(r Msg) bool { return r.Step != rep[0].Step || r.Flags&FlagNoState != 0 })
	if !failure && len(rep) == len(base.Members) && len(stay) == len(rep) && len(joiners) == 0 && !uneven {
		for _, r := range rep {
			m.consumed[r.From] = r.Seq
			m.continued[r.From] = r.Seq
			delete(m.reports, r.From)
			if r.From != m.id {
				m.send(Msg{Kind: Continue, To: r.From, Epoch: base.Number, Seq: r.Seq})
			}
		}
		m.finish(Outcome{Epoch: base, Step: m.cur.Done})
		return
	}
	// A round is worth starting only if a majority of the base can
	// answer: the reporters and the members rejoining (acceptors too).
	if 2*(len(rep)+rejoining) <= len(base.Members) || m.prop != nil || m.now < m.retryAt {
		return
	}
	type st struct {
		step    uint64
		noState bool
		joiner  bool
	}
	steps := map[string]st{}
	var members []string
	for _, r := range stay {
		steps[r.From] = st{step: r.Step, noState: r.Flags&FlagNoState != 0}
		members = append(members, r.From)
	}
	for _, id := range joiners {
		j := m.joinReq[id]
		steps[id] = st{step: j.step, noState: j.noState, joiner: true}
		members = append(members, id)
	}
	members = ringOrder(members)
	v := &Value{Epoch: Epoch{Number: base.Number + 1, Members: members}}
	// The source is the staying member with the most steps; only if none
	// holds state, the joiner with the most (a restarted node's
	// checkpoint). Joiners are always synced (their state may come from
	// another history with the same step count), as is every member
	// behind the source.
	pick := func(joiner bool) {
		for _, id := range members {
			if s := steps[id]; s.joiner == joiner && !s.noState && (v.Source == "" || s.step > v.Step) {
				v.Source, v.Step = id, s.step
			}
		}
	}
	if pick(false); v.Source == "" {
		pick(true)
	}
	if v.Source != "" {
		fromJoiner := steps[v.Source].joiner
		for _, id := range members {
			if s := steps[id]; id != v.Source && (fromJoiner || s.joiner || s.noState || s.step < v.Step) {
				v.Targets = append(v.Targets, id)
			}
		}
	}
	notify := slices.Clone(members)
	for _, r := range rep {
		notify = append(notify, r.From)
	}
	acceptors, all := base.Members, false
	if m.cfg.legacy&legacySplit != 0 {
		// The old rule: only the new epoch's members acknowledge.
		acceptors, all = nil, true
		for _, id := range members {
			if base.Has(id) {
				acceptors = append(acceptors, id)
			}
		}
	}
	m.startRound(base.Number, acceptors, all, nil, v, ringOrder(notify))
}

// tryForm runs on a node without a running epoch: a fresh node may form
// the first epoch; a node that held one may re-form its successor with a
// majority of its members when no peer runs that epoch or a later one.
func (m *Machine) tryForm() {
	if m.prop != nil || m.now < m.retryAt || m.now-m.viewAt < m.cfg.SettleTicks {
		return
	}
	held := m.hard.Held
	fresh := held.Number == 0
	bypass := m.cfg.legacy&legacyBypass != 0 && !m.active
	if m.activeAtLeast(max(held.Number, 1)) || m.hard.Amnesiac {
		// Someone runs an epoch: wait to be admitted. (An amnesiac node
		// lost its promises for its held epoch: a member that kept its
		// state proposes.)
		return
	}
	isCand := func(id string, p Peer) bool {
		return p.Alive && p.State == PeerJoining &&
			((fresh || bypass) && p.Epoch == 0 || !fresh && !bypass && p.Epoch == held.Number && held.Has(id) && !p.Amnesiac)
	}
	// A member of the held epoch that restarted without its durable state
	// (it shows as fresh, or as amnesiac once it learnt the epoch).
	isAmnesiac := func(id string, p Peer) bool {
		return !fresh && !bypass && p.Alive && p.State == PeerJoining && held.Has(id) &&
			(p.Epoch == 0 || p.Epoch == held.Number && p.Amnesiac)
	}
	// Count first, without allocating: this runs on every input of a
	// node that waits for an epoch, and mostly finds nothing to do.
	n, amnesiac := 1, 0
	for id, p := range m.view {
		switch {
		case fresh && !bypass && p.Alive && p.State == PeerJoining && p.Epoch > 0:
			// A restarted member of an earlier epoch waits for its
			// majority: it may need this node (a member that lost its
			// state) to re-found that epoch's successor, and a first
			// epoch beside it would strand it.
			return
		case isCand(id, p):
			if id < m.id {
				return // the lowest candidate proposes
			}
			n++
		case isAmnesiac(id, p):
			amnesiac++
		}
	}
	base, all, refound := uint64(0), true, false
	switch {
	case fresh || bypass:
		if n < m.cfg.MinMembers {
			return
		}
	case 2*n > len(held.Members):
		base, all = held.Number, false
	case n+amnesiac == len(held.Members):
		// No majority kept its state, but every member is here: re-found
		// the successor with all of them (see refound in doc.go).
		base, refound = held.Number, true
	default:
		return // no majority of the held epoch: wait
	}
	cands := make([]string, 1, n+amnesiac)
	cands[0] = m.id
	steps := map[string]uint64{m.id: m.cur.Done}
	noState := map[string]bool{m.id: m.cur.NoState}
	for id, p := range m.view {
		if isCand(id, p) || refound && isAmnesiac(id, p) {
			cands = append(cands, id)
			steps[id], noState[id] = p.Step, p.NoState
		}
	}
	slices.Sort(cands)
	acceptors := cands
	if base != 0 {
		acceptors = held.Members
	}
	v := &Value{Epoch: Epoch{Number: held.Number + 1, Members: cands}}
	if bypass {
		base = 0
	}
	src := ""
	for _, id := range cands {
		if noState[id] {
			continue
		}
		if src == "" || steps[id] > steps[src] {
			src = id
		}
	}
	if src != "" {
		v.Step, v.Source = steps[src], src
		for _, id := range cands {
			if id != src {
				v.Targets = append(v.Targets, id)
			}
		}
	}
	var cl []string
	if base == 0 || refound {
		cl = cands // the acceptors that may hold nothing find themselves here
	}
	m.startRound(base, acceptors, all, cl, v, cands)
}

func (m *Machine) startRound(base uint64, acceptors []string, all bool, cands []string, v *Value, notify []string) {
	m.maxN++
	p := &round{
		base: base, ballot: Ballot{N: m.maxN, By: m.id}, acceptors: slices.Clone(acceptors), all: all,
		cands: slices.Clone(cands), phase: 1, promises: map[string]Msg{}, accepted: map[string]bool{},
		nacks: map[string]bool{}, value: v, notify: notify, startedAt: m.now,
	}
	m.prop = p
	for _, id := range p.acceptors {
		m.send(Msg{Kind: Prepare, To: id, Base: base, Ballot: p.ballot, Cands: p.cands, Flags: p.flags()})
	}
}

// giveUp ends the current round; the next one starts after a backoff that
// differs per node, so competing proposers do not collide forever.
func (m *Machine) giveUp() {
	p := m.prop
	m.prop = nil
	m.tries++
	rank := max(slices.Index(p.acceptors, m.id), 0)
	m.retryAt = m.now + m.cfg.PhaseTicks/2*(1+rank) + min(m.tries, 4)*m.cfg.PhaseTicks/2
}

func (m *Machine) onProposerReply(mm Msg) {
	p := m.prop
	if mm.Kind == Nack {
		m.maxN = max(m.maxN, mm.Ballot.N)
		if p == nil || mm.Base != p.base || !slices.Contains(p.acceptors, mm.From) {
			return
		}
		if mm.Epoch > p.base {
			// The acceptor holds a later epoch: we are behind.
			m.giveUp()
			if m.active && mm.Epoch > m.hard.Held.Number {
				m.abandon()
			}
			return
		}
		p.nacks[mm.From] = true
		if !p.quorum(len(p.acceptors) - len(p.nacks)) {
			m.giveUp()
		}
		return
	}
	if p == nil || mm.Base != p.base || mm.Ballot != p.ballot || !slices.Contains(p.acceptors, mm.From) {
		return
	}
	switch {
	case mm.Kind == Promise && p.phase == 1:
		p.promises[mm.From] = mm
		if !p.quorum(len(p.promises)) {
			return
		}
		// Adopt the value accepted under the highest ballot, if any: it
		// may have been decided.
		var best *Msg
		for _, id := range sortedKeys(p.promises) {
			r := p.promises[id]
			if r.Value != nil && (best == nil || best.AccBallot.Less(r.AccBallot)) {
				best = &r
			}
		}
		if best != nil {
			p.value = best.Value.clone()
		}
		p.phase, p.startedAt = 2, m.now
		for _, id := range p.acceptors {
			m.send(Msg{Kind: Accept, To: id, Base: p.base, Ballot: p.ballot, Cands: p.cands, Value: p.value.clone(), Flags: p.flags()})
		}
	case mm.Kind == Accepted && p.phase == 2:
		p.accepted[mm.From] = true
		if !p.quorum(len(p.accepted)) {
			return
		}
		m.prop = nil
		m.tries = 0
		to := append(append(slices.Clone(p.acceptors), p.notify...), p.value.Epoch.Members...)
		for _, id := range ringOrder(to) {
			m.send(Msg{Kind: Commit, To: id, Base: p.base, Value: p.value.clone()})
		}
	}
}

func ringOrder(ids []string) []string {
	out := slices.Clone(ids)
	slices.Sort(out)
	return slices.Compact(out)
}
