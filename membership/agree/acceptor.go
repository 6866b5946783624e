package agree

import "slices"

// onAcceptor answers a prepare or accept for a round replacing Base.
func (m *Machine) onAcceptor(mm Msg) {
	held := m.hard.Held.Number
	reply := Msg{To: mm.From, Base: mm.Base, Ballot: mm.Ballot}
	if mm.Base == 0 && m.cfg.legacy&legacyBypass != 0 && mm.From == m.id && !m.active {
		// The old rule: a node alone may form a first epoch whatever it
		// held before.
		reply.Kind = Promise
		if mm.Kind == Accept {
			reply.Kind = Accepted
		}
		m.send(reply)
		return
	}
	switch {
	case mm.Base < held || (mm.Base == held && m.decided[held] != nil):
		if v := m.decided[mm.Base]; v != nil {
			m.send(Msg{Kind: Commit, To: mm.From, Base: mm.Base, Value: v.clone()})
			return
		}
		reply.Kind, reply.Ballot, reply.Epoch = Nack, m.hard.Promised, held
		m.send(reply)
		return
	case held == 0 && mm.Base > 0 && mm.Flags&FlagAll != 0 && !m.active && m.hard.Accepted == nil && slices.Contains(mm.Cands, m.id):
		// A fresh node named a member of the base by a round that needs
		// every member: it lost its durable state (see refound). It takes
		// the base as held, marked amnesiac, and answers as its acceptor.
		m.hard = HardState{Held: Epoch{Number: mm.Base, Members: slices.Clone(mm.Cands)}, Amnesiac: true}
		m.dirty = true
		held = mm.Base
	case mm.Base > held:
		return // behind: the commit will tell us
	case held == 0 && !slices.Contains(mm.Cands, m.id):
		return
	case m.hard.Amnesiac && mm.Flags&FlagAll == 0:
		// Its lost acceptances may have made a majority: it cannot vote
		// in one.
		reply.Kind, reply.Ballot, reply.Epoch = Nack, m.hard.Promised, held
		m.send(reply)
		return
	}
	switch mm.Kind {
	case Prepare:
		if !m.hard.Promised.Less(mm.Ballot) {
			reply.Kind, reply.Ballot, reply.Epoch = Nack, m.hard.Promised, held
			m.send(reply)
			return
		}
		m.hard.Promised = mm.Ballot
		m.dirty = true
		reply.Kind, reply.AccBallot, reply.Value = Promise, m.hard.AccBallot, m.hard.Accepted.clone()
	case Accept:
		if mm.Ballot.Less(m.hard.Promised) || mm.Value == nil {
			reply.Kind, reply.Ballot, reply.Epoch = Nack, m.hard.Promised, held
			m.send(reply)
			return
		}
		m.hard.Promised, m.hard.AccBallot, m.hard.Accepted = mm.Ballot, mm.Ballot, mm.Value.clone()
		m.dirty = true
		reply.Kind = Accepted
	}
	m.maxN = max(m.maxN, mm.Ballot.N)
	m.send(reply)
}
