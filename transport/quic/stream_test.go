package quic

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/ringtrain/ringtrain/internal/wire"
	"github.com/ringtrain/ringtrain/transport"
)

// pair returns two connected endpoints and their conns to each other.
func pair(t *testing.T) (a, b *Endpoint, ab, ba *conn) {
	t.Helper()
	eps := newCluster(t, testSecret(), []string{"a", "b"}, nil)
	ctx := ctxT(t, 10*time.Second)
	c1, err := eps[0].Conn(ctx, "b")
	if err != nil {
		t.Fatal(err)
	}
	c2, err := eps[1].Conn(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	return eps[0], eps[1], c1.(*conn), c2.(*conn)
}

// waitFor polls cond until it holds or d passes (the transport's streams
// close on QUIC's own timers, outside any fake clock).
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (c *conn) tagCount() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.tags)
}

func (c *conn) open() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.openStreams
}

func msg(i, size int) []byte { return bytes.Repeat([]byte{byte(i)}, size) }

func recvWant(t *testing.T, ctx context.Context, c transport.Conn, tag transport.Tag, want []byte) {
	t.Helper()
	buf := make([]byte, len(want)+16)
	n, err := c.Recv(ctx, tag, buf)
	if err != nil {
		t.Fatalf("recv %d bytes starting %v: %v", len(want), want[:min(len(want), 2)], err)
	}
	if !bytes.Equal(buf[:n], want) {
		t.Fatalf("got %d bytes starting %v, want %d starting %v", n, buf[:min(n, 2)], len(want), want[:min(len(want), 2)])
	}
}

// TestOneStreamPerTag: the messages of a tag share one stream, of every
// size (queued whole, or with a written-behind tail); a second tag gets its
// own; when both are idle their streams close and neither end keeps state.
func TestOneStreamPerTag(t *testing.T) {
	_, _, ab, ba := pair(t)
	ctx := ctxT(t, 20*time.Second)
	t1, t2 := transport.Tag{Epoch: 1, Op: 1}, transport.Tag{Epoch: 1, Op: 2}
	sizes := []int{0, 5, writeBehind, writeBehind + 1, 3 << 20}
	errc := make(chan error, 2)
	for _, tag := range []transport.Tag{t1, t2} {
		go func() {
			for i, n := range sizes {
				if err := ab.Send(ctx, tag, msg(i, n)); err != nil {
					errc <- err
					return
				}
			}
			errc <- nil
		}()
	}
	// t2 first: t1's sender waits for flow control meanwhile.
	for _, tag := range []transport.Tag{t2, t1} {
		for i, n := range sizes {
			recvWant(t, ctx, ba, tag, msg(i, n))
		}
	}
	for range 2 {
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
	}
	if got := ab.sent.Load(); got != 2 {
		t.Errorf("%d streams opened for 2 tags", got)
	}
	waitFor(t, 5*time.Second, "idle streams still open, or tag state kept", func() bool {
		return ab.open() == 0 && ab.tagCount() == 0 && ba.tagCount() == 0
	})
}

// TestTagOrderAcrossStreams: when a tag's stream closes while the peer has
// not read it all, the next Send opens a newer stream, and the receiver
// still reads every message once, in order.
func TestTagOrderAcrossStreams(t *testing.T) {
	_, _, ab, ba := pair(t)
	ctx := ctxT(t, 20*time.Second)
	tag := transport.Tag{Epoch: 2, Op: 1}
	const per = 3
	for round := range 3 {
		for i := range per {
			if err := ab.Send(ctx, tag, msg(round*per+i, 1000)); err != nil {
				t.Fatal(err)
			}
		}
		waitFor(t, 5*time.Second, "the idle stream did not close", func() bool { return ab.open() == 0 })
	}
	if got := ab.sent.Load(); got != 3 {
		t.Fatalf("%d streams opened, want 3 (one per idle period)", got)
	}
	for i := range 3 * per {
		recvWant(t, ctx, ba, tag, msg(i, 1000))
	}
}

// TestOpenStreamsBounded: with more tags in use than maxOpenStreams, the
// least recently used idle streams close first and nothing is lost.
func TestOpenStreamsBounded(t *testing.T) {
	_, _, ab, ba := pair(t)
	ctx := ctxT(t, 30*time.Second)
	tags := maxOpenStreams + 20
	for i := range tags {
		if err := ab.Send(ctx, transport.Tag{Epoch: 3, Op: uint64(i)}, msg(i, 8)); err != nil {
			t.Fatal(err)
		}
		if n := ab.open(); n > maxOpenStreams {
			t.Fatalf("%d send streams open, bound %d", n, maxOpenStreams)
		}
	}
	for i := range tags {
		recvWant(t, ctx, ba, transport.Tag{Epoch: 3, Op: uint64(i)}, msg(i, 8))
	}
}

// TestCancelledSendKeepsEarlierMessages: a Send whose ctx ends while it is
// blocked by flow control resets the stream without losing the message
// sent before it on the same stream, and the tag goes on on a newer stream.
func TestCancelledSendKeepsEarlierMessages(t *testing.T) {
	_, _, ab, ba := pair(t)
	ctx := ctxT(t, 20*time.Second)
	tag := transport.Tag{Epoch: 4, Op: 1}
	if err := ab.Send(ctx, tag, msg(1, 100)); err != nil {
		t.Fatal(err)
	}
	// Far beyond the windows: blocks until the receiver reads.
	sctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	err := ab.Send(sctx, tag, msg(2, wire.DefaultMaxPayload))
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("blocked send: got %v, want DeadlineExceeded", err)
	}
	if err := ab.Send(ctx, tag, msg(3, 100)); err != nil {
		t.Fatal(err)
	}
	// The reset went out before the newer stream: once that one is here,
	// the reset is too, and message 1 must survive it.
	waitFor(t, 5*time.Second, "the newer stream did not arrive", func() bool {
		ba.mu.Lock()
		defer ba.mu.Unlock()
		return ba.accepted >= 2
	})
	recvWant(t, ctx, ba, tag, msg(1, 100))
	// The cancelled message is never delivered; its receive may fail once
	// if its header arrived before the reset did.
	buf := make([]byte, wire.DefaultMaxPayload)
	n, err := ba.Recv(ctx, tag, buf)
	if errors.Is(err, transport.ErrAborted) {
		n, err = ba.Recv(ctx, tag, buf)
	}
	if err != nil || !bytes.Equal(buf[:n], msg(3, 100)) {
		t.Fatalf("after the cancelled send: %d bytes starting %v, %v; want message 3", n, buf[:min(n, 2)], err)
	}
}

// TestDroppedMessageKeepsStream: a message that does not fit the receive
// buffer, or whose receive runs out of time half-way, is dropped; the next
// message of the tag on the same stream is delivered.
func TestDroppedMessageKeepsStream(t *testing.T) {
	tests := []struct {
		name string
		drop func(ctx context.Context, c transport.Conn, tag transport.Tag) error
		want error
	}{
		{"buffer too small", func(ctx context.Context, c transport.Conn, tag transport.Tag) error {
			_, err := c.Recv(ctx, tag, make([]byte, 10))
			return err
		}, transport.ErrMessageSize},
		{"deadline inside the payload", func(ctx context.Context, c transport.Conn, tag transport.Tag) error {
			ctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
			defer cancel()
			_, err := c.Recv(ctx, tag, make([]byte, 1000))
			return err
		}, context.DeadlineExceeded},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cl := testCluster(t)
			b := newCluster(t, testSecret(), []string{"b"}, nil)[0]
			p := dialRaw(t, cl, "mallory", b)
			ctx := ctxT(t, 10*time.Second)
			c, err := b.Conn(ctx, "mallory")
			if err != nil {
				t.Fatal(err)
			}
			tag := transport.Tag{Epoch: 1, Op: 1}
			s, err := p.qc.OpenUniStream()
			if err != nil {
				t.Fatal(err)
			}
			// The first message stops half-way until its receive failed.
			first := append(header(t, &wire.DataHeader{Epoch: 1, Op: 1, Length: 1000}), msg(7, 500)...)
			if _, err := s.Write(first); err != nil {
				t.Fatal(err)
			}
			if err := tt.drop(ctx, c, tag); !errors.Is(err, tt.want) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
			rest := append(msg(7, 500), header(t, &wire.DataHeader{Epoch: 1, Op: 1, Length: 3})...)
			if _, err := s.Write(append(rest, 1, 2, 3)); err != nil {
				t.Fatal(err)
			}
			recvWant(t, ctx, c, tag, []byte{1, 2, 3})
		})
	}
}

// TestCloseDeliversLastMessages: messages sent right before Close reach a
// peer that reads them after Close started, and Close returns as soon as
// the peer has read the streams to their end (not after Linger).
func TestCloseDeliversLastMessages(t *testing.T) {
	eps := newCluster(t, testSecret(), []string{"a", "b"}, func(c *Config) { c.Linger = 10 * time.Second })
	ctx := ctxT(t, 30*time.Second)
	ab, err := eps[0].Conn(ctx, "b")
	if err != nil {
		t.Fatal(err)
	}
	ba, err := eps[1].Conn(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	tags := []transport.Tag{{Epoch: 5, Op: 1}, {Epoch: 5, Op: 2}}
	// Within a stream's initial window: nobody reads before Close.
	for i := range 4 {
		for _, tag := range tags {
			if err := ab.Send(ctx, tag, msg(i, 200<<10)); err != nil {
				t.Fatal(err)
			}
		}
	}
	start := time.Now()
	closed := make(chan time.Duration, 1)
	go func() {
		eps[0].Close()
		closed <- time.Since(start)
	}()
	for _, tag := range tags {
		for i := range 4 {
			recvWant(t, ctx, ba, tag, msg(i, 200<<10))
		}
	}
	if d := <-closed; d > 5*time.Second {
		t.Fatalf("Close took %v: the peer's reads were not seen as complete", d)
	}
}

// TestRecvTimeoutBeforePayloadKeepsMessage: a Recv that runs out of time
// after the header arrived but before any payload byte did leaves the
// message to the next Recv.
func TestRecvTimeoutBeforePayloadKeepsMessage(t *testing.T) {
	cl := testCluster(t)
	b := newCluster(t, testSecret(), []string{"b"}, nil)[0]
	p := dialRaw(t, cl, "mallory", b)
	ctx := ctxT(t, 10*time.Second)
	c, err := b.Conn(ctx, "mallory")
	if err != nil {
		t.Fatal(err)
	}
	tag := transport.Tag{Epoch: 1, Op: 1}
	s, err := p.qc.OpenUniStream()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Write(header(t, &wire.DataHeader{Epoch: 1, Op: 1, Length: 4})); err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	_, err = c.Recv(rctx, tag, make([]byte, 8))
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v, want DeadlineExceeded", err)
	}
	if _, err := s.Write([]byte{9, 8, 7, 6}); err != nil {
		t.Fatal(err)
	}
	recvWant(t, ctx, c, tag, []byte{9, 8, 7, 6})
}
