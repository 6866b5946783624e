package membership_test

import (
	"context"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ringtrain/ringtrain/membership"
)

// TestFigureFormation prints the time from starting N nodes (one seed,
// loopback gossip, control over transport/mem) to every node holding the
// same first epoch of all N, and when gossip alone had converged.
// MEMBERSHIP_FIGURES lists the sizes (e.g. "8,32,100"); default 8.
func TestFigureFormation(t *testing.T) {
	sizes := []int{8}
	if env := os.Getenv("MEMBERSHIP_FIGURES"); env != "" {
		sizes = nil
		for _, f := range strings.Split(env, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || n < 1 {
				t.Fatalf("MEMBERSHIP_FIGURES: bad size %q", f)
			}
			sizes = append(sizes, n)
		}
	}
	for _, n := range sizes {
		t.Run(strconv.Itoa(n), func(t *testing.T) {
			c := newCluster(t)
			c.cfg = func(cfg *membership.Config) { cfg.MinMembers = n }
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			start := time.Now()
			nodes := make([]*node, n)
			for i, id := range ids(n) {
				nodes[i] = c.add(ctx, id)
			}
			added := time.Since(start)
			var (
				wg       sync.WaitGroup
				mu       sync.Mutex
				gossipAt time.Duration
				epochs   = make([]membership.Epoch, n)
				errs     = make([]error, n)
				agreed   time.Duration // when the last node got the first epoch
			)
			wg.Go(func() {
				waitFor(t, "gossip convergence", 60*time.Second, func() bool {
					for _, nd := range nodes {
						if len(nd.m.Roster().Alive()) != n-1 {
							return false
						}
					}
					return true
				})
				mu.Lock()
				gossipAt = time.Since(start)
				mu.Unlock()
			})
			for i, nd := range nodes {
				wg.Go(func() {
					out, err := nd.m.Boundary(ctx, membership.Step{NoState: true})
					epochs[i], errs[i] = out.Epoch, err
					mu.Lock()
					agreed = max(agreed, time.Since(start))
					mu.Unlock()
				})
			}
			wg.Wait()
			for i, err := range errs {
				if err != nil {
					t.Fatalf("%s: %v", nodes[i].id, err)
				}
				if epochs[i].Number != epochs[0].Number || len(epochs[i].Members) != n {
					t.Fatalf("%s holds epoch %+v, %s holds %+v", nodes[i].id, epochs[i], nodes[0].id, epochs[0])
				}
			}
			t.Logf("figure: %d peers: all started (joined the seed) %v, gossip converged %v, agreed first epoch %v after start",
				n, added.Round(time.Millisecond), gossipAt.Round(time.Millisecond), agreed.Round(time.Millisecond))
		})
	}
}
