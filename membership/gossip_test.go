package membership_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ringtrain/ringtrain/membership"
)

func TestIncompatiblePeerRefused(t *testing.T) {
	cases := []struct {
		name   string
		modify func(*membership.Config)
		is     error
		want   string
	}{
		{"model fingerprint", func(c *membership.Config) { c.Fingerprint = "other-model" }, membership.ErrIncompatible, `trains model fingerprint "test-model-v1", bad trains "other-model"`},
		{"protocol version", func(c *membership.Config) { c.ProtocolVersion = membership.ProtocolVersion + 1 }, membership.ErrIncompatible,
			fmt.Sprintf("speaks protocol version %d, bad speaks %d", membership.ProtocolVersion, membership.ProtocolVersion+1)},
		// Without the cluster key gossip cannot be decrypted: the join
		// times out.
		{"wrong gossip key", func(c *membership.Config) {
			c.GossipKey = []byte("fedcba9876543210fedcba9876543210")
			c.JoinTimeout = 500 * time.Millisecond
		}, context.DeadlineExceeded, "join seeds"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := newCluster(t)
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			a := c.add(ctx, "n00")
			b := c.add(ctx, "n01")
			waitFor(t, "two nodes see each other", 10*time.Second, func() bool {
				return len(a.m.Roster().Alive()) == 1 && len(b.m.Roster().Alive()) == 1
			})

			ep, err := c.net.Endpoint("bad")
			if err != nil {
				t.Fatal(err)
			}
			cfg := c.config("bad", ep)
			cfg.JoinTimeout = 2 * time.Second
			cfg.Snapshot = func() ([]byte, error) { return nil, nil }
			cfg.Restore = func([]byte) error { return nil }
			tc.modify(&cfg)
			m, err := membership.New(ctx, cfg)
			if err == nil {
				m.Crash()
				t.Fatal("incompatible node joined")
			}
			if !errors.Is(err, tc.is) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want %v mentioning %q", err, tc.is, tc.want)
			}
			t.Logf("refused: %v", err)
			for _, n := range []*node{a, b} {
				if _, ok := n.m.Roster().Get("bad"); ok {
					t.Errorf("%s lists the refused node", n.id)
				}
			}
		})
	}
}

func TestConfigRefusals(t *testing.T) {
	c := newCluster(t)
	ep, err := c.net.Endpoint("n00")
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name   string
		modify func(*membership.Config)
		want   string
	}{
		{"no key", func(c *membership.Config) { c.GossipKey = nil }, "no gossip key"},
		{"short key", func(c *membership.Config) { c.GossipKey = []byte("short") }, "want 32"},
		{"no hooks", func(c *membership.Config) { c.Snapshot = nil }, "Snapshot and Restore"},
		{"endpoint mismatch", func(c *membership.Config) { c.ID = "other" }, "endpoint ID"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := c.config("n00", ep)
			cfg.Snapshot = func() ([]byte, error) { return nil, nil }
			cfg.Restore = func([]byte) error { return nil }
			tc.modify(&cfg)
			m, err := membership.New(context.Background(), cfg)
			if err == nil {
				m.Crash()
				t.Fatal("accepted")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want %q", err, tc.want)
			}
		})
	}
}

// TestRosterMetadata checks that gossip delivers every node's metadata
// (QUIC address, state, epoch) to the others, through OnRoster snapshots
// and Roster.
func TestRosterMetadata(t *testing.T) {
	c := newCluster(t)
	var (
		mu    sync.Mutex
		snaps []membership.Roster
	)
	c.cfg = func(cfg *membership.Config) {
		cfg.QUICAddr = quicAddr(cfg.ID)
		if cfg.ID == "n00" {
			cfg.OnRoster = func(r membership.Roster) {
				mu.Lock()
				snaps = append(snaps, r)
				mu.Unlock()
			}
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var nodes []*node
	for _, id := range ids(3) {
		nodes = append(nodes, c.add(ctx, id))
	}
	waitFor(t, "n00 sees both peers", 10*time.Second, func() bool { return len(nodes[0].m.Roster().Alive()) == 2 })
	for _, id := range []string{"n01", "n02"} {
		p, ok := nodes[0].m.Roster().Get(id)
		if !ok {
			t.Fatalf("n00's roster lacks %s", id)
		}
		if p.QUICAddr != quicAddr(id) || p.State != membership.StateJoining || p.Epoch != 0 || p.Fingerprint != "test-model-v1" {
			t.Errorf("%s metadata %+v", id, p.Meta)
		}
	}
	mu.Lock()
	n := len(snaps)
	mu.Unlock()
	if n < 2 {
		t.Errorf("OnRoster called %d times, want at least one per peer", n)
	}
}

// quicAddr is a distinct made-up data-plane address per test node.
func quicAddr(id string) string { return "127.0.0.1:7" + strings.TrimPrefix(id, "n") }
