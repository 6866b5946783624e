package membership_test

import (
	"context"
	"slices"
	"testing"
	"time"
)

// TestDeferredStateSync runs a cluster without Snapshot/Restore hooks: the
// loop transfers state itself after Boundary (Outcome.Sync, SendState,
// RecvState), and a newcomer admitted mid-run ends bitwise identical.
func TestDeferredStateSync(t *testing.T) {
	c := newCluster(t)
	c.deferred = true
	nodes := startCluster(t, c, 3)
	waitFor(t, "training progress", 20*time.Second, func() bool { return maxDone(nodes...) >= 5 })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	newcomer := c.add(ctx, "n03")
	c.run(newcomer)
	all := append(slices.Clone(nodes), newcomer)
	waitFor(t, "the newcomer trains", 30*time.Second, func() bool {
		for _, n := range all {
			if len(n.lastEpoch().Members) != 4 {
				return false
			}
		}
		return true
	})
	c.stopSoon(all, 5)
	c.waitDone(all...)
	for _, n := range all {
		if n.runErr != nil {
			t.Errorf("%s: %v", n.id, n.runErr)
		}
		for _, s := range n.stepsCopy() {
			if s.err != nil {
				t.Errorf("%s: failed step in epoch %d: %v", n.id, s.epoch, s.err)
			}
		}
	}
	newcomer.mu.Lock()
	synced := newcomer.synced
	newcomer.mu.Unlock()
	if synced != 1 {
		t.Errorf("newcomer received %d state transfers, want 1", synced)
	}
	checkSame(t, all...)
}
