package membership_test

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/ringtrain/ringtrain/collective"
	"github.com/ringtrain/ringtrain/internal/secret"
	"github.com/ringtrain/ringtrain/membership"
	"github.com/ringtrain/ringtrain/transport/quic"
)

// TestControlConnections: the control plane's connections grow with O(1)
// peers per member. 16 members (8 under -race) on real QUIC endpoints (with IdleClose, as
// node sets it) form an epoch (state sync included) and train in it: each
// round is a Boundary and an all-reduce on the ring, whose links are kept
// open as node keeps them (KeepOpen). Once the connections the epoch's
// formation opened have gone idle, every member other than the
// coordinator holds connections only to its two ring neighbours and the
// coordinator (at most 3), and the coordinator to no one outside the
// epoch, round after round. Before, every member dialed every live peer
// (n-1 each).
func TestControlConnections(t *testing.T) {
	const idleClose = 1500 * time.Millisecond
	n := 16
	if raceEnabled {
		// 16 memberlists and QUIC endpoints under the race detector on
		// the shared 2-core machine: gossip declared live peers dead
		// hundreds of times a minute and no first epoch (which needs
		// every candidate) formed in 3 minutes.
		n = 8
	}
	cluster, sec, err := secret.Ephemeral()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	type qnode struct {
		id string
		ep *quic.Endpoint
		m  *membership.Member
		g  *collective.Group
	}
	nodes := make([]*qnode, n)
	var seeds []string
	for i := range nodes {
		id := fmt.Sprintf("q%02d", i)
		ep, m := startQUICMember(ctx, t, quic.Config{ID: id, Secret: sec, Logger: slog.New(slog.DiscardHandler), IdleClose: idleClose}, cluster.GossipKey(), seeds, n, "conns-test")
		if seeds == nil {
			seeds = []string{m.GossipAddr()}
		}
		nodes[i] = &qnode{id: id, ep: ep, m: m}
	}

	var epoch membership.Epoch
	round := func(done uint64) {
		t.Helper()
		var (
			wg     sync.WaitGroup
			mu     sync.Mutex
			epochs = map[string]membership.Epoch{}
		)
		for _, q := range nodes {
			wg.Go(func() {
				out, err := q.m.Boundary(ctx, membership.Step{Done: done, NoState: done == 0})
				if err != nil {
					t.Errorf("%s: boundary %d: %v", q.id, done, err)
					return
				}
				if out.Changed {
					if done > 0 {
						t.Errorf("%s: epoch changed in steady state, to %+v", q.id, out.Epoch)
					}
					mem := out.Epoch.Members
					r := slices.Index(mem, q.id)
					q.ep.KeepOpen(mem[(r+1)%len(mem)], mem[(r+len(mem)-1)%len(mem)]) // as node does
					if q.g, err = collective.New(ctx, collective.Config{Endpoint: q.ep, Members: mem, Epoch: out.Epoch.Number, Timeout: 20 * time.Second}); err != nil {
						t.Errorf("%s: %v", q.id, err)
						return
					}
				}
				mu.Lock()
				epochs[q.id] = out.Epoch
				mu.Unlock()
				buf := make([]float32, 256)
				for j := range buf {
					buf[j] = grad(j)
				}
				if err := q.g.AllReduce(ctx, buf, collective.Sum); err != nil {
					t.Errorf("%s: all-reduce after boundary %d: %v", q.id, done, err)
					return
				}
				if buf[7] != float32(n)*grad(7) {
					t.Errorf("%s: all-reduce: %v, want %v", q.id, buf[7], float32(n)*grad(7))
				}
			})
		}
		wg.Wait()
		if t.Failed() {
			t.FailNow()
		}
		epoch = epochs[nodes[0].id]
		for _, q := range nodes {
			if e := epochs[q.id]; e.Number != epoch.Number || !slices.Equal(e.Members, epoch.Members) {
				t.Fatalf("%s holds epoch %+v, %s holds %+v", q.id, e, nodes[0].id, epoch)
			}
		}
	}

	round(0)
	if len(epoch.Members) != n {
		t.Fatalf("first epoch %+v", epoch)
	}
	coord := epoch.Members[0] // the lowest member coordinates
	// want is the exact set a member may be connected to in steady state.
	want := func(id string) []string {
		if id == coord {
			return slices.DeleteFunc(slices.Clone(epoch.Members), func(p string) bool { return p == id })
		}
		r := slices.Index(epoch.Members, id)
		w := []string{coord, epoch.Members[(r+1)%n], epoch.Members[(r+n-1)%n]}
		slices.Sort(w)
		return slices.Compact(w)
	}
	// extra returns, per node, the connections outside want.
	extra := func() (map[string][]string, int) {
		out, most := map[string][]string{}, 0
		for _, q := range nodes {
			got := q.ep.Connected()
			if q.id != coord {
				most = max(most, len(got))
			}
			if x := slices.DeleteFunc(got, func(p string) bool { return slices.Contains(want(q.id), p) }); len(x) > 0 {
				out[q.id] = x
			}
		}
		return out, most
	}
	_, formed := extra()
	t.Logf("figure: %d members, connections of the busiest non-coordinator right after the first epoch: %d", n, formed)

	// Train until the formation's connections have closed: IdleClose and
	// a sampling period after the last exchange, with slack for a loaded
	// machine.
	var (
		done     uint64 = 1
		deadline        = time.Now().Add(20 * idleClose)
		start           = time.Now()
	)
	for {
		round(done)
		done++
		x, _ := extra()
		if len(x) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %d steady rounds (%v), connections beyond the ring neighbours and the coordinator %s: %v", done-1, time.Since(start).Round(time.Millisecond), coord, x)
		}
	}
	t.Logf("figure: connections outside ring+coordinator closed %v after the first epoch (%d rounds; IdleClose %v)", time.Since(start).Round(time.Millisecond), done-1, idleClose)
	// Steady state: it stays so, round after round.
	most := 0
	for range 10 {
		round(done)
		done++
		x, m := extra()
		if len(x) > 0 {
			t.Fatalf("round %d: connections beyond the ring neighbours and the coordinator %s: %v", done-1, coord, x)
		}
		most = max(most, m)
	}
	if most > 3 {
		t.Fatalf("a non-coordinator holds %d connections, want at most 3", most)
	}
	t.Logf("figure: %d members, steady state over 10 rounds: at most %d connections per non-coordinator (ring neighbours + coordinator), coordinator %d",
		n, most, len(nodes[slices.IndexFunc(nodes, func(q *qnode) bool { return q.id == coord })].ep.Connected()))
}

// TestTransportLossReported: a peer whose transport connection is lost
// while its gossip still runs (its endpoint closed) is reported by the
// receivers of the connections to it, without any dialing, and the others
// form the next epoch without it while gossip still shows it alive.
func TestTransportLossReported(t *testing.T) {
	c := newCluster(t)
	c.cfg = func(cfg *membership.Config) { cfg.MinMembers = 3 }
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var nodes []*node
	for _, id := range ids(3) {
		nodes = append(nodes, c.add(ctx, id))
	}
	boundary := func(ns []*node, s membership.Step) []membership.Outcome {
		t.Helper()
		outs := make([]membership.Outcome, len(ns))
		var wg sync.WaitGroup
		for i, nd := range ns {
			wg.Go(func() {
				var err error
				if outs[i], err = nd.m.Boundary(ctx, s); err != nil {
					t.Errorf("%s: %v", nd.id, err)
				}
			})
		}
		wg.Wait()
		if t.Failed() {
			t.FailNow()
		}
		return outs
	}
	if out := boundary(nodes, membership.Step{NoState: true}); len(out[0].Epoch.Members) != 3 {
		t.Fatalf("first epoch %+v", out[0].Epoch)
	}
	victim := nodes[2]
	lostAt := time.Now()
	victim.m.Config().Endpoint.Close()
	out := boundary(nodes[:2], membership.Step{Done: 1})
	took := time.Since(lostAt)
	if want := []string{nodes[0].id, nodes[1].id}; !slices.Equal(out[0].Epoch.Members, want) || !slices.Equal(out[1].Epoch.Members, want) {
		t.Fatalf("after %s's transport was lost: epochs %+v and %+v, want members %v", victim.id, out[0].Epoch, out[1].Epoch, want)
	}
	// Without the report the coordinator waits ReportTimeout (30 s here)
	// for the victim's report.
	if took > 10*time.Second {
		t.Fatalf("the next epoch formed %v after %s's transport was lost: not reported", took, victim.id)
	}
	for _, p := range nodes[0].m.Roster().Peers {
		if p.ID == victim.id && !p.Alive {
			t.Fatalf("gossip declared %s dead: the transport's report was not what formed the epoch", victim.id)
		}
	}
	t.Logf("figure: endpoint of %s closed, gossip alive → survivors hold the next epoch: %v", victim.id, took.Round(time.Millisecond))
}
