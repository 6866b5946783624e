package quic

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/ringtrain/ringtrain/internal/wire"
	"github.com/ringtrain/ringtrain/transport"
)

// silentPeer is a UDP socket that never answers: a dial to it can only time
// out. It is closed by t.Cleanup.
func silentPeer(t *testing.T) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	return pc.LocalAddr().String()
}

// TestDialTimeoutIsNotALoss: running out of time while dialing is
// ErrUnreachable (and the context's error), never ErrPeerLost, which
// membership takes as a definite loss.
func TestDialTimeoutIsNotALoss(t *testing.T) {
	eps := newCluster(t, testSecret(), []string{"a"}, nil)
	eps[0].AddPeer("ghost", silentPeer(t))
	cases := []struct {
		name    string
		timeout time.Duration
	}{
		{"shorter than one handshake", 300 * time.Millisecond},
		{"longer than one handshake", 2500 * time.Millisecond}, // HandshakeTimeout is 2 s in newCluster
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), tc.timeout)
			defer cancel()
			_, err := eps[0].Conn(ctx, "ghost")
			if !errors.Is(err, transport.ErrUnreachable) || !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("got %v, want ErrUnreachable and DeadlineExceeded", err)
			}
			if errors.Is(err, transport.ErrPeerLost) {
				t.Fatalf("a dial timeout is reported as a loss: %v", err)
			}
			checkNamesPeer(t, err, "ghost")
		})
	}
}

// TestFailPeerEndsDial: FailPeer ends a dial in progress, and the calls
// waiting for that dial, at once with ErrPeerLost; a later dial runs again.
func TestFailPeerEndsDial(t *testing.T) {
	eps := newCluster(t, testSecret(), []string{"a"}, nil)
	eps[0].AddPeer("ghost", silentPeer(t))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	errc := make(chan error, 2)
	for range 2 {
		go func() {
			_, err := eps[0].Conn(ctx, "ghost")
			errc <- err
		}()
	}
	time.Sleep(200 * time.Millisecond)
	start := time.Now()
	eps[0].FailPeer("ghost", errors.New("gossip: ghost is dead"))
	for range 2 {
		select {
		case err := <-errc:
			if !errors.Is(err, transport.ErrPeerLost) || !strings.Contains(err.Error(), "gossip: ghost is dead") {
				t.Fatalf("got %v, want ErrPeerLost with the cause", err)
			}
			checkNamesPeer(t, err, "ghost")
		case <-time.After(2 * time.Second):
			t.Fatal("a dial still runs 2 s after FailPeer")
		}
	}
	t.Logf("dials ended %v after FailPeer", time.Since(start))
	short, cancel2 := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel2()
	if _, err := eps[0].Conn(short, "ghost"); !errors.Is(err, transport.ErrUnreachable) {
		t.Fatalf("a later dial: got %v, want it to run (and time out) again", err)
	}
}

// TestAbortReasonFromPeerBounded: an abort reason longer than the limit,
// as a peer running other code might send it, is stored truncated.
func TestAbortReasonFromPeerBounded(t *testing.T) {
	eps := newCluster(t, testSecret(), []string{"a", "b"}, nil)
	ctx := ctxT(t, 20*time.Second)
	ca, err := eps[0].Conn(ctx, "b")
	if err != nil {
		t.Fatal(err)
	}
	cb, err := eps[1].Conn(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	tag := transport.Tag{Epoch: 1, Op: 1}
	long := strings.Repeat("é", 32<<10) // 64 KiB, 2-byte runes
	if err := ca.(*conn).writeControl(ctx, &wire.Control{Body: &wire.Control_Abort{Abort: &wire.Abort{Epoch: tag.Epoch, Op: tag.Op, Reason: long}}}); err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	_, err = cb.Recv(rctx, tag, make([]byte, 8))
	var ae *transport.AbortError
	if !errors.As(err, &ae) {
		t.Fatalf("got %v, want an AbortError", err)
	}
	if len(ae.Reason) > transport.MaxReasonLen || len(ae.Reason) < transport.MaxReasonLen-1 || !strings.HasPrefix(long, ae.Reason) {
		t.Fatalf("stored reason of %d bytes, want a prefix of at most %d", len(ae.Reason), transport.MaxReasonLen)
	}
}

func checkNamesPeer(t *testing.T, err error, peer string) {
	t.Helper()
	var oe *transport.OpError
	if !errors.As(err, &oe) || oe.Peer != peer {
		t.Errorf("error %v is not an OpError naming %s", err, peer)
	}
}
