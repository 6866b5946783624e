package agree

import (
	"strings"
	"testing"
)

// Scripted regression schedules for the three defects of issue 12. Each
// runs twice: with the old rule (legacy, test builds only) it must show
// the defect, with the protocol as it is it must not.

func quiet(n int) simOpts {
	return simOpts{n: n, ticks: 400, faultUntil: 400, liveWithin: 400}
}

func cut(s *sim, groups map[string]int) {
	clear(s.block)
	for _, a := range s.nodes {
		for _, b := range s.nodes {
			if groups[a.id] != groups[b.id] {
				s.block[[2]string{a.id, b.id}] = true
			}
		}
	}
	s.logf("partition %v", groups)
}

// splitWithLeaver: 5 nodes; n2 reports a leave to the coordinator n0, then
// {n0,n1} | {n2,n3,n4} split. n0 holds 3 of 5 reports (its own, n1's and
// the leaver's) and, under the old rule, needs acknowledgements only from
// {n0,n1}; n2's side forms {n3,n4}: two successors of one epoch.
func splitWithLeaver(legacy legacyRules) *sim {
	s := newSim(1, quiet(5))
	s.o.legacy, s.tracing = legacy, true
	for _, n := range s.nodes {
		n.m.cfg.legacy = legacy
	}
	asked, split := false, false
	s.runHook(func() {
		if s.steps >= 3 && !asked {
			asked = true
			s.byID["n2"].wantLeft = true
			s.logf("n2 asks to leave")
		}
		if asked && !split {
			if r, ok := s.byID["n0"].m.reports["n2"]; ok && r.Flags&FlagLeave != 0 {
				split = true
				cut(s, map[string]int{"n0": 0, "n1": 0, "n2": 1, "n3": 1, "n4": 1})
			}
		}
		if s.now == 300 {
			clear(s.block)
		}
	})
	if !split {
		s.violate("scenario did not reach the split")
	}
	return s
}

// bypass: a node that held epoch 1 of {n0,n1,n2} restarts cut off from
// the others, with MinMembers 1 (the trainer's default). Under the old
// rule it forms a first epoch alone beside the one n1 and n2 run; now it
// waits for a majority of epoch 1.
func bypass(legacy legacyRules) *sim {
	s := newSim(1, simOpts{ticks: 100, faultUntil: 100, liveWithin: 100})
	s.tracing = true
	held := Epoch{Number: 1, Members: []string{"n0", "n1", "n2"}}
	s.decided[0] = &Value{Epoch: held}
	m := New(Config{ID: "n0", MinMembers: 1, Hard: HardState{Held: held}, legacy: legacy})
	m.tap = s.observeSend
	m.Observe([]Peer{{ID: "n1"}, {ID: "n2"}}) // gossip: both dead
	m.Boundary(StepReport{Done: 5})
	for range 100 {
		m.Tick()
		if rd := m.Ready(); rd.Outcome != nil && rd.Outcome.Changed {
			s.violate("majority bypass: n0 alone formed epoch %v", rd.Outcome.Epoch)
			break
		}
		m.Advance()
	}
	return s
}

// lostContinue: 3 nodes; the first "continue" to n1 after step 3 is
// lost. Answering n1's resent report again costs a resend; dropping it
// (the old rule) fails the next step and changes the epoch.
func lostContinue(legacy legacyRules) *sim {
	o := quiet(3)
	o.ticks = 200
	s := newSim(1, o)
	s.o.legacy, s.tracing = legacy, true
	for _, n := range s.nodes {
		n.m.cfg.legacy = legacy
	}
	dropped := false
	s.o.dropIf = func(m Msg) bool {
		if !dropped && s.steps >= 3 && m.Kind == Continue && m.To == "n1" {
			dropped = true
			return true
		}
		return false
	}
	s.runHook(nil)
	if !dropped {
		s.violate("scenario did not drop a continue")
	}
	if s.failedSteps > 0 || len(s.decided) > 1 {
		s.violate("lost continue: %d failed steps, %d epochs decided", s.failedSteps, len(s.decided))
	}
	return s
}

func TestRegressionSchedules(t *testing.T) {
	cases := []struct {
		name   string
		run    func(legacyRules) *sim
		legacy legacyRules
		want   string // in the legacy run's violation
	}{
		{"split brain with a leaver", splitWithLeaver, legacySplit, "decided 2[n3 n4]"},
		{"majority bypass", bypass, legacyBypass, "two epochs decided for base 0"},
		{"lost continue", lostContinue, legacyDropDup, "lost continue"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if s := c.run(0); s.fail != "" {
				t.Fatalf("current rules: %s\n%s", s.fail, s.dump(80))
			}
			s := c.run(c.legacy)
			if !strings.Contains(s.fail, c.want) {
				t.Fatalf("old rule: got violation %q, want one containing %q\n%s", s.fail, c.want, s.dump(80))
			}
			t.Logf("old rule fails as expected: %s", s.fail)
		})
	}
}
