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
			c.cfg = func(cfg *membership.Config) { cfg.MinMembers = n }
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
