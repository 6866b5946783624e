package membership_test

import (
	"context"
	"errors"
	"strings"
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
		{"protocol version", func(c *membership.Config) { c.ProtocolVersion = membership.ProtocolVersion + 1 }, membership.ErrIncompatible, "speaks protocol version 1, bad speaks 2"},
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
