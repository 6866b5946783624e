package node_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/ringtrain/ringtrain/membership"
	"github.com/ringtrain/ringtrain/node"
)

// TestRestartKeepsHeld: Node.Held goes into the checkpoint and comes back
// as Config.Held. A node restarted with the epoch it held forms that
// epoch's successor (not a fresh first epoch), and a node whose held
// epoch's majority is missing waits instead of training alone.
func TestRestartKeepsHeld(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cfg := func(held membership.Epoch) node.Config {
		return node.Config{ID: "n0", Secret: []byte("the node test cluster secret"), MinPeers: 1, Logger: quiet(), Held: held}
	}
	run := func(ctx context.Context, c node.Config) (node.Boundary, membership.Epoch, error) {
		n, err := node.Start(ctx, c)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { n.Close() })
		if h := n.Held(); h.Number != c.Held.Number || !slices.Equal(h.Members, c.Held.Members) {
			t.Fatalf("Held before the first boundary: %v, want Config.Held %v", h, c.Held)
		}
		b, err := n.Boundary(ctx, node.Step{Done: 3})
		return b, n.Held(), err
	}

	b, held, err := run(ctx, cfg(membership.Epoch{}))
	if err != nil || b.Epoch != 1 || !slices.Equal(b.Members, []string{"n0"}) {
		t.Fatalf("fresh node: boundary %+v, %v; want epoch 1 [n0]", b, err)
	}
	if held.Number != 1 || !slices.Equal(held.Members, []string{"n0"}) {
		t.Fatalf("fresh node: Held %v after epoch 1", held)
	}

	b, held2, err := run(ctx, cfg(held))
	if err != nil || b.Epoch != 2 || !slices.Equal(b.Members, []string{"n0"}) {
		t.Fatalf("restarted with Held %v: boundary %+v, %v; want its successor, epoch 2 [n0]", held, b, err)
	}
	if held2.Number != 2 {
		t.Fatalf("restarted: Held %v, want epoch 2", held2)
	}

	// Held an epoch of three; alone now: no majority, no epoch.
	wait, cancelWait := context.WithTimeout(ctx, 3*time.Second)
	defer cancelWait()
	b, _, err = run(wait, cfg(membership.Epoch{Number: 4, Members: []string{"n0", "n1", "n2"}}))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("restarted alone with Held 4[n0 n1 n2]: boundary %+v, %v; want to wait (deadline exceeded)", b, err)
	}
}

// TestStateFile: with Config.StateFile the agreement's durable state is
// written at every change and read back by the next Start, which forms
// the successor of the epoch the file holds; a damaged file stops Start.
func TestStateFile(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	path := filepath.Join(t.TempDir(), "agreement.json")
	cfg := node.Config{ID: "n0", Secret: []byte("the node test cluster secret"), MinPeers: 1, Logger: quiet(), StateFile: path}
	for i, want := range []uint64{1, 2, 3} {
		n, err := node.Start(ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		b, err := n.Boundary(ctx, node.Step{Done: uint64(i)})
		if err != nil || b.Epoch != want {
			t.Fatalf("start %d: boundary %+v, %v; want epoch %d", i, b, err, want)
		}
		raw, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		h, err := membership.DecodeHardState(raw)
		if err != nil || h.Held.Number != want || !slices.Equal(h.Held.Members, []string{"n0"}) {
			t.Fatalf("start %d: state file holds %+v, %v; want epoch %d [n0]", i, h, err, want)
		}
		if err := n.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(path, []byte(`{"version":1,"state":{"Held":{"Number":2,"Members":["b","a"]}}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if n, err := node.Start(ctx, cfg); !errors.Is(err, membership.ErrHardState) {
		if n != nil {
			n.Close()
		}
		t.Fatalf("damaged state file: Start returned %v, want ErrHardState", err)
	}
}
