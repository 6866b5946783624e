package node_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ringtrain/ringtrain/collective"
	"github.com/ringtrain/ringtrain/membership"
	"github.com/ringtrain/ringtrain/node"
)

func quiet() *slog.Logger {
	if os.Getenv("NODE_DEBUG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// startNodes starts n nodes on 127.0.0.1; the first starts the cluster,
// the others join through the gossip addresses of those before them.
// mod adjusts each node's Config.
func startNodes(ctx context.Context, t testing.TB, n int, mod func(i int, c *node.Config)) []*node.Node {
	t.Helper()
	var seeds []string
	nodes := make([]*node.Node, n)
	for i := range nodes {
		c := node.Config{ID: fmt.Sprintf("n%d", i), Seeds: seeds, Secret: []byte("the node test cluster secret"), MinPeers: n, Logger: quiet()}
		if mod != nil {
			mod(i, &c)
		}
		nd, err := node.Start(ctx, c)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { nd.Close() })
		nodes[i], seeds = nd, append(seeds, nd.GossipAddr())
	}
	return nodes
}

// onEach runs f on every node at once (as separate processes would) and
// returns the results in node order.
func onEach[T any](nodes []*node.Node, f func(i int, n *node.Node) T) []T {
	out := make([]T, len(nodes))
	var wg sync.WaitGroup
	for i, n := range nodes {
		wg.Go(func() { out[i] = f(i, n) })
	}
	wg.Wait()
	return out
}

// TestWrongSecretRefused: a node with another cluster secret cannot join
// the gossip: Start fails, naming the node, and the cluster never sees it.
func TestWrongSecretRefused(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	a := startNodes(ctx, t, 1, nil)[0]
	// Start's ctx bounds its join retries.
	jctx, jcancel := context.WithTimeout(ctx, 5*time.Second)
	defer jcancel()
	b, err := node.Start(jctx, node.Config{ID: "mallory", Seeds: []string{a.GossipAddr()}, Secret: []byte("another cluster's secret"), Logger: quiet()})
	if err == nil {
		b.Close()
		t.Fatal("a node with another secret joined")
	}
	if !strings.Contains(err.Error(), "node mallory: start") || !strings.Contains(err.Error(), "join seeds") {
		t.Errorf("error %q does not name the node and operation", err)
	}
	t.Logf("refused: %v", err)
}

// TestStartErrors: misconfigurations fail at Start, naming the node and
// the cause, before anything is left running.
func TestStartErrors(t *testing.T) {
	cases := []struct {
		name string
		c    node.Config
		want error
		text string
	}{
		{"no secret across hosts", node.Config{ID: "x", Listen: "0.0.0.0:0", Logger: quiet()}, node.ErrNoSecret, "node x"},
		{"bad listen port", node.Config{ID: "x", Listen: "127.0.0.1:99999", Logger: quiet()}, nil, `node x: start: listen "127.0.0.1:99999"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			n, err := node.Start(context.Background(), tc.c)
			if err == nil {
				n.Close()
				t.Fatal("started")
			}
			if (tc.want != nil && !errors.Is(err, tc.want)) || !strings.Contains(err.Error(), tc.text) {
				t.Fatalf("got %v, want %v with %q", err, tc.want, tc.text)
			}
		})
	}
}

// TestFingerprintMismatchRefused: a node of another job (fingerprint) is
// refused by gossip.
func TestFingerprintMismatchRefused(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	a := startNodes(ctx, t, 1, func(_ int, c *node.Config) { c.Fingerprint = "job-a" })[0]
	b, err := node.Start(ctx, node.Config{ID: "other", Seeds: []string{a.GossipAddr()}, Secret: []byte("the node test cluster secret"), Fingerprint: "job-b", Logger: quiet()})
	if err == nil {
		b.Close()
		t.Fatal("a node of another job joined")
	}
	if !errors.Is(err, membership.ErrIncompatible) {
		t.Fatalf("got %v, want ErrIncompatible", err)
	}
}

// TestDataPlaneMismatchRefused: a node whose data-plane settings differ
// from the cluster's (lanes, transport, chunk size) is refused by gossip
// when it joins, naming both settings, instead of forming epochs whose
// ring it can never connect.
func TestDataPlaneMismatchRefused(t *testing.T) {
	cases := []struct {
		name string
		mod  func(c *node.Config)
		want string
	}{
		{"lanes", func(c *node.Config) { c.Lanes = 2 }, `peer n0 moves gradients with "tcp lanes=1 chunk=262144", other with "tcp lanes=2 chunk=262144"`},
		{"transport", func(c *node.Config) { c.Transport = node.TransportQUIC }, `peer n0 moves gradients with "tcp lanes=1 chunk=262144", other with "quic lanes=1 chunk=262144"`},
		{"chunk", func(c *node.Config) { c.ChunkBytes = 65536 }, `peer n0 moves gradients with "tcp lanes=1 chunk=262144", other with "tcp lanes=1 chunk=65536"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			a := startNodes(ctx, t, 1, nil)[0]
			c := node.Config{ID: "other", Seeds: []string{a.GossipAddr()}, Secret: []byte("the node test cluster secret"), Logger: quiet()}
			tc.mod(&c)
			b, err := node.Start(ctx, c)
			if err == nil {
				b.Close()
				t.Fatal("a node with other data-plane settings joined")
			}
			if !errors.Is(err, membership.ErrIncompatible) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want ErrIncompatible with %q", err, tc.want)
			}
		})
	}
}

// TestRequestLeave: a member that asks to leave gets Left at its next
// boundary; the others continue in a new epoch without it, with a new
// Group over the two of them.
func TestRequestLeave(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	nodes := startNodes(ctx, t, 3, nil)
	type result struct {
		b   node.Boundary
		err error
	}
	first := onEach(nodes, func(_ int, n *node.Node) result {
		b, err := n.Boundary(ctx, node.Step{})
		if err == nil {
			err = b.Group.AllReduce(ctx, make([]float32, 8), collective.Sum)
		}
		return result{b, err}
	})
	for i, r := range first {
		if r.err != nil || r.b.Size != 3 || !r.b.Changed || r.b.Group == nil {
			t.Fatalf("%s: first boundary %+v, %v", nodes[i].ID(), r.b, r.err)
		}
	}
	nodes[2].RequestLeave()
	second := onEach(nodes, func(i int, n *node.Node) result {
		b, err := n.Boundary(ctx, node.Step{Done: 1})
		if err == nil && !b.Left {
			buf := []float32{float32(i + 1)}
			if err = b.Group.AllReduce(ctx, buf, collective.Sum); err == nil && buf[0] != 3 {
				err = fmt.Errorf("sum %v, want 3", buf[0])
			}
		}
		return result{b, err}
	})
	for i, r := range second {
		switch {
		case r.err != nil:
			t.Errorf("%s: %v", nodes[i].ID(), r.err)
		case i == 2 && !r.b.Left:
			t.Errorf("%s: asked to leave, got %+v", nodes[i].ID(), r.b)
		case i < 2 && (r.b.Left || r.b.Size != 2 || !r.b.Changed || r.b.Epoch <= first[i].b.Epoch || r.b.Group == first[i].b.Group):
			t.Errorf("%s: got %+v after epoch %d", nodes[i].ID(), r.b, first[i].b.Epoch)
		}
	}
}
