package quic

import (
	"errors"
	"testing"
	"time"

	"github.com/ringtrain/ringtrain/transport"
)

// TestRestartedPeerReplacesStaleConnection: a peer that crashed (no close
// frame) and came back under the same ID reconnects at once; its new
// incarnation replaces the stale connection instead of being refused as a
// duplicate, and calls on the stale one fail with ErrPeerLost.
func TestRestartedPeerReplacesStaleConnection(t *testing.T) {
	cl := testSecret()
	eps := newCluster(t, cl, []string{"a", "b"}, nil)
	a, b := eps[0], eps[1]
	ctx := ctxT(t, 20*time.Second)
	old, err := a.Conn(ctx, "b")
	if err != nil {
		t.Fatal(err)
	}
	b.udp.Close() // crash: the socket vanishes, nothing tells a

	b2 := newCluster(t, cl, []string{"b"}, nil)[0]
	b2.AddPeer("a", a.Addr())
	a.AddPeer("b", b2.Addr())
	start := time.Now()
	ba, err := b2.Conn(ctx, "a") // b > a, so b dials while a still holds the stale one
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("reconnecting took %v", d)
	}
	ab, err := a.Conn(ctx, "b")
	if err != nil {
		t.Fatal(err)
	}
	if ab == old {
		t.Fatal("a kept the stale connection")
	}
	tag := transport.Tag{Epoch: 2, Op: 1}
	if err := ba.Send(ctx, tag, []byte("back")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 8)
	if n, err := ab.Recv(ctx, tag, buf); err != nil || string(buf[:n]) != "back" {
		t.Fatalf("recv on the new connection: %q %v", buf[:n], err)
	}
	if err := old.Send(ctx, tag, []byte("x")); !errors.Is(err, transport.ErrPeerLost) {
		t.Fatalf("send on the stale connection: %v, want ErrPeerLost", err)
	}
}
