package tcp

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/ringtrain/ringtrain/transport"
)

func pair(t *testing.T) (a, b *Endpoint, ab, ba transport.Conn) {
	t.Helper()
	eps := newCluster(t, testSecret(), []string{"a", "b"}, nil)
	ctx := ctxT(t, 10*time.Second)
	ab, err := eps[0].Conn(ctx, "b")
	if err != nil {
		t.Fatal(err)
	}
	ba, err = eps[1].Conn(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	return eps[0], eps[1], ab, ba
}

// TestCancelledSendDropsPartialMessage: a Send that runs out of time part
// way (nobody reads, so the tag's window fills) leaves at most tagWindow
// bytes at the receiver, and the receiver drops that partial message: the
// next Recv gets the next message whole.
func TestCancelledSendDropsPartialMessage(t *testing.T) {
	_, _, ab, ba := pair(t)
	tag := transport.Tag{Epoch: 1, Op: 1}
	big := make([]byte, 4*tagWindow)
	sctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if err := ab.Send(sctx, tag, big); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("send past the window: got %v, want DeadlineExceeded", err)
	}
	rc := ba.(*conn)
	rc.mu.Lock()
	if ts := rc.tags[tag]; ts != nil && ts.unacked > tagWindow {
		t.Errorf("receiver buffers %d bytes of one tag, window %d", ts.unacked, tagWindow)
	}
	rc.mu.Unlock()
	ctx := ctxT(t, 10*time.Second)
	want := bytes.Repeat([]byte("next"), 1000)
	if err := ab.Send(ctx, tag, want); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, len(big))
	n, err := ba.Recv(ctx, tag, buf)
	if err != nil || !bytes.Equal(buf[:n], want) {
		t.Fatalf("recv after a cancelled send: %d bytes, %v; want the next message (%d bytes)", n, err, len(want))
	}
}

// TestLargeMessagesInterleave: a message far larger than the window
// arrives whole while a small one on another tag overtakes it.
func TestLargeMessagesInterleave(t *testing.T) {
	_, _, ab, ba := pair(t)
	ctx := ctxT(t, 30*time.Second)
	bigTag, smallTag := transport.Tag{Epoch: 1, Op: 1}, transport.Tag{Epoch: 1, Op: 2}
	big := make([]byte, 3*tagWindow+12345)
	for i := range big {
		big[i] = byte(i * 7)
	}
	errc := make(chan error, 1)
	go func() { errc <- ab.Send(ctx, bigTag, big) }()
	if err := ab.Send(ctx, smallTag, []byte("small")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 8)
	if n, err := ba.Recv(ctx, smallTag, buf); err != nil || string(buf[:n]) != "small" {
		t.Fatalf("small: %q %v", buf[:n], err)
	}
	got := make([]byte, len(big))
	if n, err := ba.Recv(ctx, bigTag, got); err != nil || n != len(big) || !bytes.Equal(got, big) {
		t.Fatalf("big: %d bytes, %v; equal=%v", n, err, bytes.Equal(got, big))
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	// Both tags are finished: neither end keeps state for them.
	for _, c := range []*conn{ab.(*conn), ba.(*conn)} {
		c.mu.Lock()
		n := len(c.tags)
		c.mu.Unlock()
		if n != 0 {
			t.Errorf("%s→%s keeps %d tag states after the messages", c.e.ID(), c.peer, n)
		}
	}
}

// TestOldEpochRefused: once b has moved to epoch 5, a's data messages of
// epoch 3 are refused on both ends with ErrEpoch; control tags pass.
func TestOldEpochRefused(t *testing.T) {
	_, b, ab, ba := pair(t)
	ctx := ctxT(t, 10*time.Second)
	old := transport.Tag{Epoch: 3, Op: 1}
	ctrl := transport.Tag{Epoch: 3, Op: transport.ControlOpBase}
	b.SetEpoch(5)
	// The refusal may come back before this Send returns, or after.
	if err := ab.Send(ctx, old, []byte("stale")); err != nil && !errors.Is(err, transport.ErrEpoch) {
		t.Fatalf("first send of a stale epoch: got %v, want nil or ErrEpoch", err)
	}
	// A control round trip: b refused the stale message before it read
	// the control one, so a holds the refusal once the reply is in.
	if err := ab.Send(ctx, ctrl, []byte("ping")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 8)
	if _, err := ba.Recv(ctx, ctrl, buf); err != nil {
		t.Fatal(err)
	}
	if err := ba.Send(ctx, ctrl, []byte("pong")); err != nil {
		t.Fatal(err)
	}
	if _, err := ab.Recv(ctx, ctrl, buf); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		err  error
		peer string
	}{
		{"sender's later send", ab.Send(ctx, old, []byte("x")), "b"},
		{"receiver's recv", func() error { _, err := ba.Recv(ctx, old, buf); return err }(), "a"},
		{"a lowered epoch is ignored", func() error { b.SetEpoch(2); _, err := ba.Recv(ctx, old, buf); return err }(), "a"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if !errors.Is(tt.err, transport.ErrEpoch) {
				t.Fatalf("got %v, want ErrEpoch", tt.err)
			}
			checkPeer(t, tt.err, tt.peer)
		})
	}
}

// TestRestartedPeerReplacesConnection: a peer that restarts on the same
// address (a new incarnation) gets a new connection; the old one's calls
// end with ErrPeerLost.
func TestRestartedPeerReplacesConnection(t *testing.T) {
	eps := newCluster(t, testSecret(), []string{"a", "b"}, nil)
	ctx := ctxT(t, 10*time.Second)
	old, err := eps[0].Conn(ctx, "b")
	if err != nil {
		t.Fatal(err)
	}
	addr := eps[1].Addr().String()
	eps[1].Close()
	b2, err := Listen(Config{ID: "b", Secret: testSecret(), ListenAddr: addr, Peers: map[string]string{"a": eps[0].Addr().String()}})
	if err != nil {
		t.Fatal(err)
	}
	defer b2.Close()
	tag := transport.Tag{Epoch: 1, Op: 1}
	if _, err := old.Recv(ctx, tag, make([]byte, 1)); !errors.Is(err, transport.ErrPeerLost) {
		t.Fatalf("old connection: got %v, want ErrPeerLost", err)
	}
	c, err := b2.Conn(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Send(ctx, tag, []byte("hi")); err != nil {
		t.Fatal(err)
	}
	na, err := eps[0].Conn(ctx, "b")
	if err != nil || na == old {
		t.Fatalf("a's connection after b restarted: %v (same as the old one: %v)", err, na == old)
	}
	buf := make([]byte, 2)
	if n, err := na.Recv(ctx, tag, buf); err != nil || string(buf[:n]) != "hi" {
		t.Fatalf("%q %v", buf[:n], err)
	}
}

// TestStagedBuffersRecycled: messages that arrive before their Recv are
// staged in pooled sub-frame buffers; after a message is read, dropped
// by a too-small Recv, or aborted, its buffers serve the next messages,
// which arrive intact (a buffer recycled while still referenced would
// mix two messages' bytes, and the race detector would see the reader
// write what a Recv copies).
func TestStagedBuffersRecycled(t *testing.T) {
	_, _, ab, ba := pair(t)
	ctx := ctxT(t, 20*time.Second)
	const size = 3*maxSubFrame + 100 // full sub-frames and a short tail
	msg := func(i int) []byte {      // every sub-frame of every message differs
		p := make([]byte, size)
		for j := range p {
			p[j] = byte(i*17 + j/maxSubFrame*5 + j)
		}
		return p
	}
	buf := make([]byte, size)
	staged := func(c transport.Conn, tag transport.Tag, want int) func() bool {
		return func() bool {
			rc := c.(*conn)
			rc.mu.Lock()
			defer rc.mu.Unlock()
			ts := rc.tags[tag]
			return ts != nil && len(ts.queue) == 1 && ts.queue[0].got == want
		}
	}
	for i, how := range []string{"read", "too small", "aborted", "read", "read"} {
		tag := transport.Tag{Epoch: 1, Op: uint64(i + 1)}
		if err := ab.Send(ctx, tag, msg(i)); err != nil {
			t.Fatal(err)
		}
		poll(t, "message staged", 5*time.Second, staged(ba, tag, size))
		switch how {
		case "read":
			if n, err := ba.Recv(ctx, tag, buf); err != nil || !bytes.Equal(buf[:n], msg(i)) {
				t.Fatalf("message %d: %d bytes, %v; want its %d bytes", i, n, err, size)
			}
		case "too small":
			if _, err := ba.Recv(ctx, tag, buf[:size-1]); !errors.Is(err, transport.ErrMessageSize) {
				t.Fatalf("message %d into a short buffer: %v, want ErrMessageSize", i, err)
			}
		case "aborted":
			if err := ba.Abort(ctx, tag, errors.New("test")); err != nil {
				t.Fatal(err)
			}
		}
	}
}
