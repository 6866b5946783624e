package membership_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ringtrain/ringtrain/membership"
	"github.com/ringtrain/ringtrain/transport/mem"
)

func ids(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("n%02d", i)
	}
	return out
}

// startCluster starts n nodes from one seed and runs them until they train
// in one epoch of all n.
func startCluster(t *testing.T, c *cluster, n int) []*node {
	t.Helper()
	c.cfg = func(cfg *membership.Config) { cfg.MinMembers = n }
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var nodes []*node
	for _, id := range ids(n) {
		nodes = append(nodes, c.add(ctx, id))
	}
	for _, nd := range nodes {
		c.run(nd)
	}
	waitFor(t, fmt.Sprintf("%d nodes in one epoch", n), 30*time.Second, func() bool {
		for _, nd := range nodes {
			if len(nd.lastEpoch().Members) != n {
				return false
			}
		}
		return true
	})
	return nodes
}

func (n *node) stepsCopy() []stepRec {
	n.mu.Lock()
	defer n.mu.Unlock()
	return slices.Clone(n.steps)
}

func TestFormAndJoin(t *testing.T) {
	c := newCluster(t)
	nodes := startCluster(t, c, 8)
	first := nodes[0].lastEpoch()
	for _, n := range nodes {
		if e := n.lastEpoch(); e.Number != first.Number || !slices.Equal(e.Members, first.Members) {
			t.Fatalf("%s runs epoch %+v, %s runs %+v", n.id, e, nodes[0].id, first)
		}
	}
	waitFor(t, "training progress", 20*time.Second, func() bool { return maxDone(nodes...) >= 10 })

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	joinStart := time.Now()
	newcomer := c.add(ctx, "n08")
	c.run(newcomer)
	all := append(slices.Clone(nodes), newcomer)
	waitFor(t, "the newcomer trains", 30*time.Second, func() bool {
		for _, n := range all {
			if len(n.lastEpoch().Members) != 9 {
				return false
			}
		}
		return true
	})
	t.Logf("figure: join (New of the 9th node) → every member runs the 9-node epoch: %v",
		latest(t, joinStart, all, func(e membership.Epoch) bool { return len(e.Members) == 9 }).Round(100*time.Microsecond))
	c.stopSoon(all, 10)
	c.waitDone(all...)

	admitted := newcomer.lastEpoch()
	for _, n := range all {
		if n.runErr != nil {
			t.Errorf("%s: %v", n.id, n.runErr)
		}
		for _, s := range n.stepsCopy() {
			if s.err != nil {
				t.Errorf("%s: failed step in epoch %d: %v", n.id, s.epoch, s.err)
			}
			if s.epoch >= admitted.Number && s.size != 9 {
				t.Errorf("%s: step in epoch %d had %d members, want 9", n.id, s.epoch, s.size)
			}
		}
		if e := n.lastEpoch(); e.Number != admitted.Number || !slices.Equal(e.Members, admitted.Members) {
			t.Errorf("%s ends in epoch %+v, newcomer in %+v", n.id, e, admitted)
		}
	}
	if got := newcomer.stepsCopy(); len(got) == 0 {
		t.Error("newcomer ran no step")
	}
	checkSame(t, all...)
}

func TestCrashDuringAllReduce(t *testing.T) {
	cases := []struct {
		name   string
		victim int
		hang   bool // the victim hangs (detected by timeouts and gossip) instead of crashing
	}{
		{"member", 3, false},
		{"leader", 0, false},
		{"hung member", 2, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := newCluster(t)
			nodes := startCluster(t, c, 6)
			victim := nodes[tc.victim]
			survivors := slices.Delete(slices.Clone(nodes), tc.victim, tc.victim+1)
			at := maxDone(nodes...) + 5
			victim.hang.Store(tc.hang)
			victim.crashAt.Store(at)
			waitFor(t, "the crash", 20*time.Second, func() bool { return victim.crashed.Load() })
			waitFor(t, "survivors' next epoch", 30*time.Second, func() bool {
				for _, n := range survivors {
					if e := n.lastEpoch(); len(e.Members) != len(survivors) {
						return false
					}
				}
				return true
			})
			victim.mu.Lock()
			crashAt := victim.crashAt2
			victim.mu.Unlock()
			t.Logf("figure: %s (of 6) gone → every survivor runs the next epoch: %v (collective timeout %v)", tc.name,
				latest(t, crashAt, survivors, func(e membership.Epoch) bool { return !e.Has(victim.id) }).Round(100*time.Microsecond), c.opTime)
			c.stopSoon(survivors, 10)
			c.waitDone(survivors...)

			next := survivors[0].lastEpoch()
			if next.Has(victim.id) {
				t.Fatalf("next epoch %+v still has %s", next, victim.id)
			}
			for _, n := range survivors {
				if n.runErr != nil {
					t.Errorf("%s: %v", n.id, n.runErr)
				}
				if e := n.lastEpoch(); e.Number != next.Number || !slices.Equal(e.Members, next.Members) {
					t.Errorf("%s ends in %+v, %s in %+v", n.id, e, survivors[0].id, next)
				}
				failed := 0
				for _, s := range n.stepsCopy() {
					if s.err == nil {
						continue
					}
					failed++
					// A crash names the victim in every survivor's error
					// (directly or in the abort reason); a hang shows up as
					// timeouts that may name any neighbour.
					if !tc.hang && !strings.Contains(s.err.Error(), victim.id) {
						t.Errorf("%s: step error does not name %s: %v", n.id, victim.id, s.err)
					}
					if s.epoch >= next.Number {
						t.Errorf("%s: failed step in the survivors' epoch %d: %v", n.id, s.epoch, s.err)
					}
				}
				if failed == 0 {
					t.Errorf("%s: no step failed although %s crashed during an all-reduce", n.id, victim.id)
				}
			}
			checkSame(t, survivors...)
			if t.Failed() {
				dumpSteps(t, nodes...)
			}
		})
	}
}

func TestGracefulLeave(t *testing.T) {
	c := newCluster(t)
	nodes := startCluster(t, c, 5)
	leaver := nodes[2]
	leaver.leaveAt.Store(maxDone(nodes...) + 5)
	c.waitDone(leaver)
	if leaver.runErr != nil {
		t.Fatalf("leaver: %v", leaver.runErr)
	}
	stay := slices.Delete(slices.Clone(nodes), 2, 3)
	waitFor(t, "progress after the leave", 20*time.Second, func() bool { return maxDone(stay...) >= leaver.done+5 })
	c.stopSoon(stay, 5)
	c.waitDone(stay...)
	for _, n := range nodes {
		for _, s := range n.stepsCopy() {
			if s.err != nil {
				t.Errorf("%s: failed step in epoch %d: %v", n.id, s.epoch, s.err)
			}
		}
	}
	for _, n := range stay {
		if n.runErr != nil {
			t.Errorf("%s: %v", n.id, n.runErr)
		}
		if e := n.lastEpoch(); len(e.Members) != 4 || e.Has(leaver.id) {
			t.Errorf("%s ends in %+v", n.id, e)
		}
	}
	checkSame(t, stay...)
}

func TestPartitionMinorityWaits(t *testing.T) {
	cases := []struct {
		name         string
		major, minor []int
	}{
		{"leader in majority", []int{0, 1, 2}, []int{3, 4}},
		{"leader in minority", []int{2, 3, 4}, []int{0, 1}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) { testPartition(t, tc.major, tc.minor) })
	}
}

func testPartition(t *testing.T, majorIdx, minorIdx []int) {
	c := newCluster(t)
	c.opTime = time.Second
	nodes := startCluster(t, c, 5)
	var major, minor []*node
	groups := map[string]int{}
	for _, i := range majorIdx {
		major = append(major, nodes[i])
		groups[nodes[i].id] = 0
	}
	for _, i := range minorIdx {
		minor = append(minor, nodes[i])
		groups[nodes[i].id] = 1
	}
	waitFor(t, "progress", 20*time.Second, func() bool { return maxDone(nodes...) >= 5 })
	before := nodes[0].lastEpoch().Number

	setPartition := func(groups map[string]int) {
		c.part.mu.Lock()
		c.part.group = groups
		c.part.mu.Unlock()
		for _, a := range major {
			for _, b := range minor {
				c.net.SetLink(a.id, b.id, mem.Link{Drop: groups != nil})
			}
		}
	}
	setPartition(groups)
	cut := maxDone(nodes...)
	waitFor(t, "the majority's epoch", 30*time.Second, func() bool {
		for _, n := range major {
			if len(n.lastEpoch().Members) != len(major) {
				return false
			}
		}
		return maxDone(major...) >= cut+10
	})
	majorEpoch := major[0].lastEpoch()
	for _, n := range minor {
		if e := n.lastEpoch(); e.Number != before {
			t.Errorf("minority node %s moved to epoch %+v", n.id, e)
		}
		if d := maxDone(n); d > cut+1 {
			t.Errorf("minority node %s applied %d steps after the cut at %d", n.id, d, cut)
		}
	}

	healAt := time.Now()
	setPartition(nil)
	rejoined := func(e membership.Epoch) bool { return len(e.Members) == 5 && e.Number > majorEpoch.Number }
	waitFor(t, "all five in one epoch after the heal", 40*time.Second, func() bool {
		for _, n := range nodes {
			if !rejoined(n.lastEpoch()) {
				return false
			}
		}
		return true
	})
	t.Logf("figure: heal → all five run one epoch: %v", latest(t, healAt, nodes, rejoined).Round(100*time.Microsecond))
	c.stopSoon(nodes, 5)
	c.waitDone(nodes...)
	for _, n := range nodes {
		if n.runErr != nil {
			t.Errorf("%s: %v", n.id, n.runErr)
		}
	}
	checkSame(t, nodes...)
	if t.Failed() {
		dumpSteps(t, nodes...)
	}
}
