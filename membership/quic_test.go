package membership_test

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ringtrain/ringtrain/collective"
	"github.com/ringtrain/ringtrain/internal/secret"
	"github.com/ringtrain/ringtrain/membership"
	"github.com/ringtrain/ringtrain/transport/quic"
)

// TestQUICRing runs the real wiring: gossip keyed by the cluster secret,
// QUIC endpoints whose peer addresses come from gossip metadata
// (OnRoster), control messages and all-reduces over QUIC. Four nodes form
// an epoch and all-reduce; one crashes (its endpoint closes, gossip stops
// without a leave) during an all-reduce; the three survivors form the next
// epoch and all-reduce exactly again.
func TestQUICRing(t *testing.T) {
	cluster, sec, err := secret.Ephemeral()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const n = 4
	type qnode struct {
		id string
		ep *quic.Endpoint
		m  *membership.Member
	}
	nodes := make([]*qnode, n)
	var seeds []string
	for i := range nodes {
		id := fmt.Sprintf("q%d", i)
		qlog := testLogger()
		if qlog == nil {
			qlog = slog.New(slog.DiscardHandler)
		}
		ep, m := startQUICMember(ctx, t, quic.Config{ID: id, Secret: sec, Logger: qlog}, cluster.GossipKey(), seeds, n, "quic-test")
		if seeds == nil {
			seeds = []string{m.GossipAddr()}
		}
		nodes[i] = &qnode{id, ep, m}
	}

	// allReduce runs one step on every listed node and returns each
	// node's error.
	allReduce := func(qs []*qnode, groups map[string]*collective.Group) map[string]error {
		var (
			wg   sync.WaitGroup
			mu   sync.Mutex
			errs = map[string]error{}
		)
		for _, q := range qs {
			wg.Go(func() {
				g := groups[q.id]
				buf := make([]float32, 1000)
				for j := range buf {
					buf[j] = grad(j)
				}
				octx, ocancel := context.WithTimeout(ctx, 3*time.Second)
				err := g.AllReduce(octx, buf, collective.Sum)
				ocancel()
				for j := range buf {
					if err == nil && buf[j] != float32(g.Size())*grad(j) {
						err = fmt.Errorf("element %d = %v, want %v", j, buf[j], float32(g.Size())*grad(j))
					}
				}
				mu.Lock()
				errs[q.id] = err
				mu.Unlock()
			})
		}
		wg.Wait()
		return errs
	}
	// boundary runs Boundary on every listed node and builds its group.
	boundary := func(qs []*qnode, errs map[string]error) (map[string]*collective.Group, membership.Epoch) {
		var (
			wg     sync.WaitGroup
			mu     sync.Mutex
			groups = map[string]*collective.Group{}
			epochs = map[string]membership.Epoch{}
		)
		for _, q := range qs {
			wg.Go(func() {
				out, err := q.m.Boundary(ctx, membership.Step{Err: errs[q.id]})
				if err == nil {
					var g *collective.Group
					g, err = collective.New(ctx, collective.Config{Endpoint: q.ep, Members: out.Epoch.Members, Epoch: out.Epoch.Number, Timeout: 3 * time.Second})
					mu.Lock()
					groups[q.id], epochs[q.id] = g, out.Epoch
					mu.Unlock()
				}
				if err != nil {
					t.Errorf("%s: %v", q.id, err)
				}
			})
		}
		wg.Wait()
		if t.Failed() {
			t.FailNow()
		}
		first := epochs[qs[0].id]
		for _, q := range qs {
			if e := epochs[q.id]; e.Number != first.Number || !slices.Equal(e.Members, first.Members) {
				t.Fatalf("%s holds epoch %+v, %s holds %+v", q.id, e, qs[0].id, first)
			}
		}
		return groups, first
	}

	groups, e1 := boundary(nodes, nil)
	if len(e1.Members) != n {
		t.Fatalf("first epoch %+v", e1)
	}
	for id, err := range allReduce(nodes, groups) {
		if err != nil {
			t.Fatalf("%s: %v", id, err)
		}
	}

	victim, survivors := nodes[2], slices.Delete(slices.Clone(nodes), 2, 3)
	time.AfterFunc(5*time.Millisecond, func() {
		victim.ep.Close()
		victim.m.Crash()
	})
	errs := allReduce(survivors, groups) // the victim never joins this all-reduce
	for _, q := range survivors {
		if err := errs[q.id]; err == nil || !strings.Contains(err.Error(), victim.id) {
			t.Errorf("%s: got %v, want an error naming %s", q.id, err, victim.id)
		}
	}
	failed := time.Now()
	groups, e2 := boundary(survivors, errs)
	t.Logf("figure: QUIC, 1 of 4 crashed: failed all-reduce returned → survivors hold the next epoch: %v", time.Since(failed).Round(100*time.Microsecond))
	if e2.Has(victim.id) || len(e2.Members) != n-1 {
		t.Fatalf("next epoch %+v", e2)
	}
	for id, err := range allReduce(survivors, groups) {
		if err != nil {
			t.Fatalf("%s after the crash: %v", id, err)
		}
	}
}

// startQUICMember starts a member over a QUIC endpoint of qc whose peer
// addresses come from gossip (OnRoster), as node wires them; both are
// closed (the member crashed) when the test ends.
func startQUICMember(ctx context.Context, t *testing.T, qc quic.Config, gossipKey []byte, seeds []string, n int, fingerprint string) (*quic.Endpoint, *membership.Member) {
	t.Helper()
	ep, err := quic.Listen(qc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ep.Close() })
	cfg := membership.LocalConfig()
	cfg.ID, cfg.QUICAddr, cfg.Fingerprint = qc.ID, ep.Addr(), fingerprint
	cfg.GossipKey = gossipKey
	cfg.Endpoint, cfg.Seeds, cfg.MinMembers = ep, seeds, n
	cfg.Snapshot = func() ([]byte, error) { return []byte("state"), nil }
	cfg.Restore = func([]byte) error { return nil }
	cfg.OnRoster = func(r membership.Roster) {
		for _, p := range r.Peers {
			if p.QUICAddr != "" {
				ep.AddPeer(p.ID, p.QUICAddr)
			}
		}
	}
	cfg.Logger = testLogger()
	m, err := membership.New(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Crash() })
	return ep, m
}
