package membership_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/ringtrain/ringtrain/membership"
)

// BenchmarkBoundary times one step boundary without a membership change:
// every member reports to the coordinator and waits for its answer (one
// control round trip over transport/mem, gossip on loopback). This is the
// per-step cost of epoch agreement.
func BenchmarkBoundary(b *testing.B) {
	for _, n := range []int{2, 8, 32, 100} {
		b.Run(fmt.Sprintf("peers=%d", n), func(b *testing.B) {
			c := newCluster(b)
			c.cfg = func(cfg *membership.Config) {
				cfg.MinMembers = n
				if n >= 100 {
					relaxGossip(cfg)
				}
			}
			// 100 in-process gossip members on a small machine take a
			// while to settle into their first epoch.
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute+time.Duration(n)*time.Second)
			defer cancel()
			nodes := make([]*node, n)
			for i, id := range ids(n) {
				nodes[i] = c.add(ctx, id)
			}
			boundary := func(rounds int, first bool) {
				var wg sync.WaitGroup
				for _, nd := range nodes {
					wg.Go(func() {
						for range rounds {
							out, err := nd.m.Boundary(ctx, membership.Step{NoState: first})
							if err != nil {
								b.Error(err)
								return
							}
							if !first && out.Changed {
								b.Errorf("%s: epoch changed to %+v", nd.id, out.Epoch)
							}
						}
					})
				}
				wg.Wait()
			}
			boundary(1, true) // form the first epoch
			b.ResetTimer()
			boundary(b.N, false)
		})
	}
}

// relaxGossip slows the failure detector for 100 gossip members in one
// process. With the tuned timers (probe every 300 ms, 150 ms timeout,
// gossip every 100 ms) memberlist's handler queues overflowed on the
// loaded 2-core machine ("handler queue full, dropping message"), acks
// were lost, live members were declared dead and refuted, and the
// coordinator formed a second epoch with the same 100 members in the
// middle of the timed loop, before and after the control plane change.
// The benchmark times the agreement's round trip, not gossip's
// detector, so it runs gossip at memberlist's LAN probe timers.
func relaxGossip(cfg *membership.Config) {
	g := *cfg.Gossip
	g.ProbeInterval, g.ProbeTimeout = time.Second, 500*time.Millisecond
	g.GossipInterval, g.SuspicionMult = 200*time.Millisecond, 4
	cfg.Gossip = &g
}
