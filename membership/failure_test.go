package membership_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/ringtrain/ringtrain/membership"
	"github.com/ringtrain/ringtrain/transport"
	"github.com/ringtrain/ringtrain/transport/mem"
)

// failRecorder is a mem endpoint that records the FailPeer calls
// membership makes on it.
type failRecorder struct {
	*mem.Endpoint
	mu    sync.Mutex
	calls map[string]time.Time
	cause map[string]error
}

func (f *failRecorder) FailPeer(id string, cause error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.calls[id]; !ok {
		f.calls[id] = time.Now()
		f.cause[id] = cause
	}
}

func (f *failRecorder) failed(id string) (time.Time, error, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	at, ok := f.calls[id]
	return at, f.cause[id], ok
}

// gossipOnly starts n members (no training loop) whose endpoints record
// FailPeer, and waits until each sees all the others.
func gossipOnly(t *testing.T, c *cluster, n int) ([]*membership.Member, []*failRecorder) {
	t.Helper()
	var (
		ms  []*membership.Member
		eps []*failRecorder
	)
	for _, id := range ids(n) {
		ep, err := c.net.Endpoint(id)
		if err != nil {
			t.Fatal(err)
		}
		fr := &failRecorder{Endpoint: ep, calls: map[string]time.Time{}, cause: map[string]error{}}
		cfg := c.config(id, ep)
		cfg.Endpoint = fr
		cfg.Snapshot = func() ([]byte, error) { return nil, nil }
		cfg.Restore = func([]byte) error { return nil }
		m, err := membership.New(context.Background(), cfg)
		if err != nil {
			t.Fatalf("start %s: %v", id, err)
		}
		if len(c.seeds) == 0 {
			c.seeds = []string{m.GossipAddr()}
		}
		ms, eps = append(ms, m), append(eps, fr)
	}
	waitFor(t, "a full roster everywhere", 20*time.Second, func() bool {
		for _, m := range ms {
			alive := 0
			for _, p := range m.Roster().Peers {
				if p.Alive {
					alive++
				}
			}
			if alive != n-1 {
				return false
			}
		}
		return true
	})
	return ms, eps
}

// TestDeadPeerFailedOnEndpoint: when gossip declares a peer dead, every
// other member's endpoint is told to fail it at once (so collectives
// blocked on it abort), within the failure detector's bound; a graceful
// leave fails no one.
func TestDeadPeerFailedOnEndpoint(t *testing.T) {
	cases := []struct {
		name     string
		graceful bool
	}{
		{"crash", false},
		{"graceful leave", true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := newCluster(t)
			ms, eps := gossipOnly(t, c, 5)
			defer func() {
				for _, m := range ms[:4] {
					m.Crash()
				}
			}()
			victim := ms[4].ID()
			// A step of an epoch with the victim, and one without it.
			withVictim, stop1 := ms[0].AbortOnDeath(context.Background(), []string{ms[1].ID(), victim})
			defer stop1()
			without, stop2 := ms[0].AbortOnDeath(context.Background(), []string{ms[1].ID(), ms[2].ID()})
			defer stop2()
			start := time.Now()
			if tc.graceful {
				if err := ms[4].Close(); err != nil {
					t.Fatal(err)
				}
				waitFor(t, "the leave to spread", 10*time.Second, func() bool {
					for _, m := range ms[:4] {
						for _, p := range m.Roster().Peers {
							if p.ID == victim && !p.Left {
								return false
							}
						}
					}
					return true
				})
				time.Sleep(time.Second) // a wrong FailPeer would come right after the event
				for i, ep := range eps[:4] {
					if _, _, ok := ep.failed(victim); ok {
						t.Errorf("%s failed %s after a graceful leave", ms[i].ID(), victim)
					}
				}
				if withVictim.Err() != nil {
					t.Errorf("a step with the leaver was aborted: %v", context.Cause(withVictim))
				}
				return
			}
			c.net.Crash(victim)
			ms[4].Crash()
			// Bound: probe round + the longest suspicion timeout + gossip,
			// with slack for a loaded machine.
			waitFor(t, "FailPeer on every survivor", 6*time.Second, func() bool {
				for _, ep := range eps[:4] {
					if _, _, ok := ep.failed(victim); !ok {
						return false
					}
				}
				return true
			})
			var first, last time.Duration
			for i, ep := range eps[:4] {
				at, cause, _ := ep.failed(victim)
				if !errors.Is(cause, membership.ErrDeclaredDead) {
					t.Errorf("%s: FailPeer cause %v does not wrap ErrDeclaredDead", ms[i].ID(), cause)
				}
				d := at.Sub(start)
				if first == 0 || d < first {
					first = d
				}
				last = max(last, d)
				for _, other := range ms[:4] {
					if _, _, ok := ep.failed(other.ID()); ok {
						t.Errorf("%s failed the live peer %s", ms[i].ID(), other.ID())
					}
				}
			}
			select {
			case <-withVictim.Done():
				cause := context.Cause(withVictim)
				var op *transport.OpError
				if !errors.Is(cause, transport.ErrPeerLost) || !errors.Is(cause, membership.ErrDeclaredDead) || !errors.As(cause, &op) || op.Peer != victim {
					t.Errorf("step aborted with %v, want an OpError naming %s that wraps ErrPeerLost and ErrDeclaredDead", cause, victim)
				}
			case <-time.After(time.Second):
				t.Error("a step with the dead peer was not aborted")
			}
			if without.Err() != nil {
				t.Errorf("a step without the dead peer was aborted: %v", context.Cause(without))
			}
			// A step that starts after the death is aborted at once.
			late, stop3 := ms[1].AbortOnDeath(context.Background(), []string{victim})
			defer stop3()
			if late.Err() == nil {
				t.Error("a step with a peer already dead was not aborted")
			}
			t.Logf("figure: gossip crash of 1 of 5 → FailPeer on the first survivor %v, on the last %v",
				first.Round(time.Millisecond), last.Round(time.Millisecond))
		})
	}
}
