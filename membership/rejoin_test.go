package membership_test

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/ringtrain/ringtrain/membership"
	"github.com/ringtrain/ringtrain/transport/mem"
)

// TestFrozenPeerRejoins emulates a peer frozen (SIGSTOP) for a few
// seconds: gossip cannot reach it, and what it and the others send
// meanwhile arrives only after it wakes. The others drop it; when it
// wakes, its stale report for the old epoch (naming the others as lost)
// must not make them form an epoch without a healthy member: it is
// admitted like a newcomer, and nothing else changes.
func TestFrozenPeerRejoins(t *testing.T) {
	cases := []struct {
		name   string
		victim int
	}{
		{"member", 2},
		{"leader", 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := newCluster(t)
			c.opTime = time.Second
			nodes := startCluster(t, c, 5)
			victim := nodes[tc.victim]
			healthy := slices.Delete(slices.Clone(nodes), tc.victim, tc.victim+1)
			waitFor(t, "progress", 20*time.Second, func() bool { return maxDone(nodes...) >= 5 })
			before := len(healthy[0].epochsCopy())

			const freeze = 4 * time.Second
			groups := map[string]int{victim.id: 1}
			for _, n := range healthy {
				groups[n.id] = 0
			}
			setLinks := func(l mem.Link) {
				for _, n := range healthy {
					c.net.SetLink(victim.id, n.id, l)
				}
			}
			c.part.mu.Lock()
			c.part.group = groups
			c.part.mu.Unlock()
			setLinks(mem.Link{Delay: freeze})
			waitFor(t, "the others' epoch without the frozen peer", 20*time.Second, func() bool {
				for _, n := range healthy {
					if e := n.lastEpoch(); len(e.Members) != len(healthy) || e.Has(victim.id) {
						return false
					}
				}
				return true
			})
			dropped := healthy[0].lastEpoch().Number
			time.Sleep(freeze / 2)
			c.part.mu.Lock()
			c.part.group = nil
			c.part.mu.Unlock()
			setLinks(mem.Link{})
			wokeAt := time.Now()

			whole := func(e membership.Epoch) bool { return len(e.Members) == len(nodes) }
			waitFor(t, "all five in one epoch after the wake", 40*time.Second, func() bool {
				for _, n := range nodes {
					if !whole(n.lastEpoch()) || n.lastEpoch().Number != healthy[0].lastEpoch().Number {
						return false
					}
				}
				return true
			})
			t.Logf("figure: wake → all five run one epoch: %v", latest(t, wokeAt, nodes, func(e membership.Epoch) bool {
				return whole(e) && e.Number > dropped
			}).Round(100*time.Microsecond))
			c.stopSoon(nodes, 5)
			c.waitDone(nodes...)
			for _, n := range healthy {
				if n.runErr != nil {
					t.Errorf("%s: %v", n.id, n.runErr)
				}
				later := n.epochsCopy()[before:]
				for _, e := range later {
					for _, h := range healthy {
						if !e.Has(h.id) {
							t.Errorf("%s ran epoch %v without the healthy member %s", n.id, e, h.id)
						}
					}
				}
				t.Logf("%s: %d epochs after the freeze: %v", n.id, len(later), later)
			}
			checkSame(t, nodes...)
			if t.Failed() {
				dumpSteps(t, nodes...)
			}
		})
	}
}

// TestHardStatePersisted: every change of the agreement's durable state
// reaches Config.Persist before Boundary returns the epoch it made, and
// Member.Held reports the epoch it holds.
func TestHardStatePersisted(t *testing.T) {
	c := newCluster(t)
	var (
		mu   sync.Mutex
		last = map[string]membership.HardState{}
	)
	c.cfg = func(cfg *membership.Config) {
		cfg.MinMembers = 3
		id := cfg.ID
		cfg.Persist = func(h membership.HardState) error {
			mu.Lock()
			defer mu.Unlock()
			last[id] = h
			return nil
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var nodes []*node
	for _, id := range ids(3) {
		nodes = append(nodes, c.add(ctx, id))
	}
	outs := make([]membership.Outcome, len(nodes))
	errs := make([]error, len(nodes))
	var wg sync.WaitGroup
	for i, n := range nodes {
		wg.Go(func() { outs[i], errs[i] = n.m.Boundary(ctx, membership.Step{NoState: true}) })
	}
	wg.Wait()
	for i, n := range nodes {
		if errs[i] != nil {
			t.Fatalf("%s: %v", n.id, errs[i])
		}
		mu.Lock()
		h := last[n.id]
		mu.Unlock()
		want := outs[i].Epoch
		if !outs[i].Changed || want.Number != 1 || len(want.Members) != 3 {
			t.Errorf("%s: first boundary %+v, want epoch 1 of 3", n.id, outs[i])
		}
		if h.Held.Number != want.Number || !slices.Equal(h.Held.Members, want.Members) {
			t.Errorf("%s: persisted held epoch %v, Boundary returned %v", n.id, h.Held, want)
		}
		if got := n.m.Held(); got.Number != want.Number || !slices.Equal(got.Members, want.Members) {
			t.Errorf("%s: Held() = %v, want %v", n.id, got, want)
		}
	}
}

func (n *node) epochsCopy() []membership.Epoch {
	n.mu.Lock()
	defer n.mu.Unlock()
	return slices.Clone(n.epochs)
}
