package agree

import (
	"slices"
	"strings"
)

// The simulator's observer: what it records of every message and outcome,
// the invariants it checks on them, and the trace it prints.

func ballotKey(base uint64, b Ballot) bkey { return bkey{base, b} }

func sameValue(a, b *Value) bool {
	return a.Epoch.Number == b.Epoch.Number && slices.Equal(a.Epoch.Members, b.Epoch.Members) &&
		a.Step == b.Step && a.Source == b.Source && slices.Equal(a.Targets, b.Targets)
}

// observeSend checks the agreement invariants on every message sent.
func (s *sim) observeSend(mm Msg) {
	if s.verbose {
		s.logf("send %v", mm)
	}
	switch mm.Kind {
	case Accept:
		s.acceptVal[ballotKey(mm.Base, mm.Ballot)] = mm.Value.clone()
		s.acceptCands[ballotKey(mm.Base, mm.Ballot)] = mm.Cands
	case Accepted:
		k := ballotKey(mm.Base, mm.Ballot)
		if s.accepted[k] == nil {
			s.accepted[k] = map[string]bool{}
		}
		s.accepted[k][mm.From] = true
	case Commit:
		v := mm.Value
		if d := s.decided[mm.Base]; d != nil {
			if !sameValue(d, v) {
				s.violate("two epochs decided for base %d: %v and %v", mm.Base, d, v)
			}
			return
		}
		s.decided[mm.Base] = v.clone()
		s.logf("DECIDED base %d → %v", mm.Base, v)
		// A majority of the base (all candidates of a first epoch)
		// accepted this value under one ballot.
		var base []string
		if mm.Base > 0 {
			mk := s.decided[mm.Base-1] // the value that made the base epoch
			if mk == nil {
				s.violate("base %d decided %v, but no epoch %d was ever decided", mm.Base, v, mm.Base)
				return
			}
			base = mk.Epoch.Members
		}
		ok := false
		for k, av := range s.acceptVal {
			if k.base != mm.Base || !sameValue(av, v) {
				continue
			}
			acc := s.accepted[k]
			if mm.Base == 0 {
				cands := s.acceptCands[k]
				all := len(cands) >= s.cfgFor("", HardState{}).MinMembers
				for _, id := range cands {
					all = all && acc[id]
				}
				ok = ok || all
				continue
			}
			c := 0
			for _, id := range base {
				if acc[id] {
					c++
				}
			}
			ok = ok || 2*c > len(base)
		}
		if !ok {
			s.violate("base %d decided %v without a majority of %v accepting it", mm.Base, v, base)
		}
	}
}

// onOutcome: the boundary returned; check what every member must agree on.
func (s *sim) onOutcome(n *simNode, o Outcome) {
	s.logf("%s outcome %v changed=%v left=%v step=%d sync=%v", n.id, o.Epoch, o.Changed, o.Left, o.Step, o.Sync)
	if o.Left {
		n.gone, n.up = true, false
		return
	}
	if o.Changed {
		e := o.Epoch
		if prev, ok := s.epochs[e.Number]; ok && !slices.Equal(prev, e.Members) {
			s.violate("%s applied epoch %d as %v, others as %v", n.id, e.Number, e.Members, prev)
		}
		s.epochs[e.Number] = slices.Clone(e.Members)
		if s.applied[n.id] == nil {
			s.applied[n.id] = map[uint64]bool{}
		}
		if s.applied[n.id][e.Number] {
			s.violate("%s applied epoch %d twice", n.id, e.Number)
		}
		s.applied[n.id][e.Number] = true
		n.epoch, n.attempt, n.sync = e, 0, o.Sync
		n.phase = 1
	} else {
		n.attempt++
		n.sync = SyncOrder{}
		n.phase = 2
		s.arrive(n)
	}
	n.since = s.now
}

func (s *sim) dump(max int) string {
	t := s.trace
	if len(t) > max {
		t = t[len(t)-max:]
	}
	return strings.Join(t, "\n")
}
