package agree

import (
	"slices"
	"testing"
)

// Members that lose their durable state (a wiped disk): scripted
// schedules over the simulator. Every node of a 3-node epoch crashes;
// some come back without their HardState and their training state, the
// others with both.

// wipe restarts a crashed node with neither its agreement state nor its
// training state.
func (s *sim) wipe(n *simNode) {
	n.up, n.hard = true, HardState{}
	n.m = s.newMachine(n.id, n.hard)
	n.contact, n.view, n.seen = nil, nil, nil
	n.done, n.params, n.noState = 0, 0, true
	// A new incarnation as far as "never applies an epoch twice" goes: it
	// may be told an epoch it applied before its disk was lost (see the
	// residual case in doc.go); the same number with another member list
	// is still caught.
	delete(s.applied, n.id)
	s.logf("restart %s wiped", n.id)
	s.boundary(n, StepReport{NoState: true})
}

// keep restarts a crashed node with both states (no random loss).
func (s *sim) keep(n *simNode) {
	n.up = true
	n.m = s.newMachine(n.id, n.hard)
	n.contact, n.view, n.seen = nil, nil, nil
	s.logf("restart %s hard=%v", n.id, n.hard.Held)
	s.boundary(n, StepReport{Done: n.done, NoState: n.noState})
}

func TestLostDurableState(t *testing.T) {
	cases := []struct {
		name  string
		wiped []string // restart without state
		kept  []string // restart with it
		// want: the members of the successor of the held epoch, nil if
		// none may form (and no first epoch either)
		want []string
	}{
		// No majority kept its state, but every member is back: the
		// member that kept it re-founds the epoch with all of them.
		{"one of three kept, all back", []string{"n0", "n1"}, []string{"n2"}, []string{"n0", "n1", "n2"}},
		// A majority kept it: the usual successor, without the amnesiac
		// (it joins the running epoch afterwards).
		{"majority kept", []string{"n0"}, []string{"n1", "n2"}, []string{"n1", "n2"}},
		// One member kept its state, one lost it, one stays down. The
		// wiped member cannot be told from one that missed the commit of
		// epoch 1: it is resent that commit, applies it again with empty
		// acceptor state and votes (the residual case in doc.go: its lost
		// promises could have counted toward another successor).
		{"residual: one kept, one wiped, one down", []string{"n0"}, []string{"n1"}, []string{"n0", "n1"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			o := quiet(3)
			o.ticks, o.faultUntil, o.liveWithin = 700, 120, 400
			if c.want == nil {
				o.faultUntil = o.ticks // no liveness owed: a vote is lost
			}
			s := newSim(1, o)
			s.tracing = true
			var held Epoch
			crashedAt, decidedAtCrash := -1, 0
			s.runHook(func() {
				switch {
				case crashedAt < 0 && s.steps >= 5:
					crashedAt = s.now
					held, decidedAtCrash = s.byID["n2"].m.Held(), len(s.decided)
					for _, n := range s.nodes {
						s.crash(n)
					}
				case crashedAt >= 0 && s.now == crashedAt+5:
					for _, id := range c.wiped {
						s.wipe(s.byID[id])
					}
					for _, id := range c.kept {
						s.keep(s.byID[id])
					}
				}
			})
			if s.fail != "" {
				t.Fatalf("%s\n%s", s.fail, s.dump(80))
			}
			if crashedAt < 0 {
				t.Fatalf("no step before the crash\n%s", s.dump(80))
			}
			v := s.decided[held.Number]
			switch {
			case c.want == nil && v != nil:
				t.Fatalf("epoch %v formed from base %d with a lost vote\n%s", v.Epoch, held.Number, s.dump(80))
			case c.want == nil && len(s.decided) != decidedAtCrash:
				t.Fatalf("%d epochs decided after the crash, want none (a first epoch beside the waiting member?)\n%s", len(s.decided)-decidedAtCrash, s.dump(80))
			case c.want != nil && (v == nil || !slices.Equal(v.Epoch.Members, c.want)):
				t.Fatalf("successor of epoch %d: %v, want members %v\n%s", held.Number, v, c.want, s.dump(80))
			case c.want != nil && s.lastFull < o.faultUntil:
				t.Fatalf("no step in an epoch of every up node after the restarts\n%s", s.dump(80))
			}
			if v != nil {
				t.Logf("successor of %v: %v", held, v.Epoch)
			}
		})
	}
}
