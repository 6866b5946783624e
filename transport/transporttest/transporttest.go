// Package transporttest is the conformance suite every transport.Endpoint
// implementation must pass: per-tag ordering, independent tags, size limits,
// aborts, peer loss, deadlines and error shapes. transport/mem and
// transport/quic run it.
package transporttest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ringtrain/ringtrain/transport"
)

// Factory makes endpoints with the given IDs that can all reach each other;
// they must be closed by t.Cleanup.
type Factory func(t testing.TB, ids []string) []transport.Endpoint

// IDs returns n node IDs, zero-padded so none is a prefix of another.
func IDs(n int) []string {
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("node-%02d", i)
	}
	return ids
}

func conn(t testing.TB, e transport.Endpoint, peer string) transport.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := e.Conn(ctx, peer)
	if err != nil {
		t.Fatalf("%s: Conn(%s): %v", e.ID(), peer, err)
	}
	return c
}

// Run runs the suite.
func Run(t *testing.T, f Factory) {
	t.Run("OrderedPerTag", func(t *testing.T) { testOrdered(t, f) })
	t.Run("TagsIndependent", func(t *testing.T) { testTags(t, f) })
	t.Run("MessageTooLarge", func(t *testing.T) { testTooLarge(t, f) })
	t.Run("Abort", func(t *testing.T) { testAbort(t, f) })
	t.Run("PeerLost", func(t *testing.T) { testPeerLost(t, f) })
	t.Run("Deadline", func(t *testing.T) { testDeadline(t, f) })
	t.Run("SameConnBothWays", func(t *testing.T) { testSameConn(t, f) })
	t.Run("FailPeer", func(t *testing.T) { testFailPeer(t, f) })
	t.Run("AbortReasonBounded", func(t *testing.T) { testAbortReasonBounded(t, f) })
	t.Run("WatchConns", func(t *testing.T) { testWatchConns(t, f) })
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func testOrdered(t *testing.T, f Factory) {
	cases := []struct {
		name  string
		count int
		size  int
	}{
		{"empty messages", 5, 0},
		{"small", 100, 13},
		{"large", 4, 3 << 20},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			eps := f(t, IDs(2))
			a, b := conn(t, eps[0], eps[1].ID()), conn(t, eps[1], eps[0].ID())
			tag := transport.Tag{Epoch: 1, Op: 7}
			ctx := ctxT(t)
			errc := make(chan error, 1)
			go func() {
				for i := range tc.count {
					p := bytes.Repeat([]byte{byte(i)}, tc.size)
					if err := a.Send(ctx, tag, p); err != nil {
						errc <- err
						return
					}
				}
				errc <- nil
			}()
			buf := make([]byte, tc.size+10)
			for i := range tc.count {
				n, err := b.Recv(ctx, tag, buf)
				if err != nil {
					t.Fatalf("recv %d: %v", i, err)
				}
				if n != tc.size || !bytes.Equal(buf[:n], bytes.Repeat([]byte{byte(i)}, tc.size)) {
					t.Fatalf("message %d: got %d bytes starting %v, want %d bytes of %d", i, n, buf[:min(n, 4)], tc.size, i)
				}
			}
			if err := <-errc; err != nil {
				t.Fatal(err)
			}
		})
	}
}

// testTags checks that a tag nobody reads does not block another tag.
func testTags(t *testing.T, f Factory) {
	eps := f(t, IDs(2))
	a, b := conn(t, eps[0], eps[1].ID()), conn(t, eps[1], eps[0].ID())
	ctx := ctxT(t)
	t1, t2 := transport.Tag{Epoch: 1, Op: 1}, transport.Tag{Epoch: 1, Op: 2}
	if err := a.Send(ctx, t1, []byte("first")); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := range 16 {
		wg.Go(func() {
			tag := transport.Tag{Epoch: 2, Op: uint64(100 + i)}
			if err := a.Send(ctx, tag, []byte{byte(i)}); err != nil {
				t.Error(err)
			}
		})
	}
	if err := a.Send(ctx, t2, []byte("second")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 16)
	n, err := b.Recv(ctx, t2, buf)
	if err != nil || string(buf[:n]) != "second" {
		t.Fatalf("tag 2: %q, %v", buf[:n], err)
	}
	for i := range 16 {
		tag := transport.Tag{Epoch: 2, Op: uint64(100 + i)}
		n, err := b.Recv(ctx, tag, buf)
		if err != nil || n != 1 || buf[0] != byte(i) {
			t.Fatalf("%v: %v %v", tag, buf[:n], err)
		}
	}
	n, err = b.Recv(ctx, t1, buf)
	if err != nil || string(buf[:n]) != "first" {
		t.Fatalf("tag 1: %q, %v", buf[:n], err)
	}
	wg.Wait()
}

func testTooLarge(t *testing.T, f Factory) {
	eps := f(t, IDs(2))
	a, b := conn(t, eps[0], eps[1].ID()), conn(t, eps[1], eps[0].ID())
	ctx := ctxT(t)
	tag := transport.Tag{Epoch: 3, Op: 1}
	go a.Send(ctx, tag, make([]byte, 100)) //nolint:errcheck // the receiver's error is what is tested
	_, err := b.Recv(ctx, tag, make([]byte, 10))
	if !errors.Is(err, transport.ErrMessageSize) {
		t.Fatalf("got %v, want ErrMessageSize", err)
	}
	checkNames(t, err, eps[0].ID())
}

func testAbort(t *testing.T, f Factory) {
	eps := f(t, IDs(2))
	a, b := conn(t, eps[0], eps[1].ID()), conn(t, eps[1], eps[0].ID())
	ctx := ctxT(t)
	tag := transport.Tag{Epoch: 4, Op: 9}
	other := transport.Tag{Epoch: 4, Op: 10}
	errc := make(chan error, 1)
	go func() {
		_, err := b.Recv(ctx, tag, make([]byte, 8))
		errc <- err
	}()
	time.Sleep(50 * time.Millisecond) // let the receive start waiting (either order must work)
	if err := a.Abort(ctx, tag, errors.New("gpu on fire")); err != nil {
		t.Fatal(err)
	}
	err := <-errc
	if !errors.Is(err, transport.ErrAborted) || !strings.Contains(err.Error(), "gpu on fire") {
		t.Fatalf("pending recv: got %v, want ErrAborted with the reason", err)
	}
	checkNames(t, err, eps[0].ID())
	if _, err := b.Recv(ctx, tag, make([]byte, 8)); !errors.Is(err, transport.ErrAborted) {
		t.Fatalf("later recv: got %v, want ErrAborted", err)
	}
	// Other tags are untouched.
	if err := a.Send(ctx, other, []byte("ok")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 8)
	if n, err := b.Recv(ctx, other, buf); err != nil || string(buf[:n]) != "ok" {
		t.Fatalf("other tag: %q %v", buf[:n], err)
	}
}

func testPeerLost(t *testing.T, f Factory) {
	eps := f(t, IDs(2))
	a, b := conn(t, eps[0], eps[1].ID()), conn(t, eps[1], eps[0].ID())
	_ = a
	ctx := ctxT(t)
	tag := transport.Tag{Epoch: 5, Op: 1}
	errc := make(chan error, 1)
	go func() {
		_, err := b.Recv(ctx, tag, make([]byte, 8))
		errc <- err
	}()
	time.Sleep(50 * time.Millisecond)
	start := time.Now()
	eps[0].Close()
	select {
	case err := <-errc:
		if !errors.Is(err, transport.ErrPeerLost) {
			t.Fatalf("got %v, want ErrPeerLost", err)
		}
		checkNames(t, err, eps[0].ID())
		t.Logf("peer loss seen after %v", time.Since(start))
	case <-time.After(15 * time.Second):
		t.Fatal("recv still waiting 15 s after the peer closed")
	}
	if err := b.Send(ctx, tag, []byte("x")); !errors.Is(err, transport.ErrPeerLost) {
		t.Fatalf("send to a closed peer: got %v, want ErrPeerLost", err)
	}
}

func testDeadline(t *testing.T, f Factory) {
	eps := f(t, IDs(2))
	b := conn(t, eps[1], eps[0].ID())
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := b.Recv(ctx, transport.Tag{Epoch: 6, Op: 1}, make([]byte, 8))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v, want DeadlineExceeded", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("recv returned %v after its deadline", d)
	}
	var oe *transport.OpError
	if !errors.As(err, &oe) || oe.Peer != eps[0].ID() {
		t.Fatalf("error %v is not an OpError naming %s", err, eps[0].ID())
	}
}

// testSameConn: both sides asking for the connection at once get one
// working pair (the transport decides who dials).
func testSameConn(t *testing.T, f Factory) {
	eps := f(t, IDs(2))
	ctx := ctxT(t)
	var ca, cb transport.Conn
	var wg sync.WaitGroup
	wg.Go(func() { ca = conn(t, eps[0], eps[1].ID()) })
	wg.Go(func() { cb = conn(t, eps[1], eps[0].ID()) })
	wg.Wait()
	if ca == nil || cb == nil {
		t.FailNow()
	}
	tag := transport.Tag{Epoch: 7, Op: 1}
	for range 3 {
		if err := ca.Send(ctx, tag, []byte("ping")); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 4)
		if _, err := cb.Recv(ctx, tag, buf); err != nil {
			t.Fatal(err)
		}
		if err := cb.Send(ctx, tag, []byte("pong")); err != nil {
			t.Fatal(err)
		}
		if _, err := ca.Recv(ctx, tag, buf); err != nil || string(buf) != "pong" {
			t.Fatalf("%q %v", buf, err)
		}
	}
	if ca2 := conn(t, eps[0], eps[1].ID()); ca2 != ca {
		t.Errorf("second Conn call returned a new connection")
	}
}

// testFailPeer: FailPeer fails the calls waiting on the peer at once, on
// both ends, and a later Conn reaches the peer again.
func testFailPeer(t *testing.T, f Factory) {
	eps := f(t, IDs(2))
	pf, ok := eps[1].(transport.PeerFailer)
	if !ok {
		t.Fatalf("%T does not implement transport.PeerFailer", eps[1])
	}
	a, b := conn(t, eps[0], eps[1].ID()), conn(t, eps[1], eps[0].ID())
	ctx := ctxT(t)
	tags := []transport.Tag{{Epoch: 8, Op: 1}, {Epoch: 8, Op: 2}}
	// A message in flight before the failure is delivered first, so the
	// connection is known to be up on both ends.
	if err := a.Send(ctx, tags[0], []byte("up")); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Recv(ctx, tags[0], make([]byte, 8)); err != nil {
		t.Fatal(err)
	}
	type result struct {
		tag transport.Tag
		err error
	}
	local, remote := make(chan result, len(tags)), make(chan result, 1)
	for _, tag := range tags {
		go func() {
			_, err := b.Recv(ctx, tag, make([]byte, 8))
			local <- result{tag, err}
		}()
	}
	go func() {
		_, err := a.Recv(ctx, tags[1], make([]byte, 8))
		remote <- result{tags[1], err}
	}()
	time.Sleep(50 * time.Millisecond) // let the receives start waiting
	start := time.Now()
	pf.FailPeer(eps[0].ID(), errors.New("suspected by gossip"))
	for range tags {
		select {
		case r := <-local:
			if !errors.Is(r.err, transport.ErrPeerLost) {
				t.Fatalf("pending recv on %v: got %v, want ErrPeerLost", r.tag, r.err)
			}
			for _, want := range []string{eps[0].ID(), r.tag.String(), "suspected by gossip"} {
				if !strings.Contains(r.err.Error(), want) {
					t.Errorf("error %q does not contain %q", r.err, want)
				}
			}
		case <-time.After(2 * time.Second):
			t.Fatal("a recv on the failed peer still waits 2 s after FailPeer")
		}
	}
	t.Logf("local calls failed %v after FailPeer", time.Since(start))
	if err := b.Send(ctx, tags[0], []byte("x")); !errors.Is(err, transport.ErrPeerLost) {
		t.Fatalf("send on the failed connection: got %v, want ErrPeerLost", err)
	}
	// The peer sees its connection closed.
	select {
	case r := <-remote:
		if !errors.Is(r.err, transport.ErrPeerLost) {
			t.Fatalf("peer's pending recv: got %v, want ErrPeerLost", r.err)
		}
		checkNames(t, r.err, eps[1].ID())
	case <-time.After(5 * time.Second):
		t.Fatal("the failed peer's recv still waits 5 s after FailPeer")
	}
	// Both directions can connect again, and the new connection works.
	a2, b2 := conn(t, eps[0], eps[1].ID()), conn(t, eps[1], eps[0].ID())
	tag := transport.Tag{Epoch: 8, Op: 3}
	buf := make([]byte, 8)
	for _, p := range []struct {
		from, to transport.Conn
		msg      string
	}{{b2, a2, "again"}, {a2, b2, "back"}} {
		if err := p.from.Send(ctx, tag, []byte(p.msg)); err != nil {
			t.Fatalf("after FailPeer: %v", err)
		}
		n, err := p.to.Recv(ctx, tag, buf)
		if err != nil || string(buf[:n]) != p.msg {
			t.Fatalf("after FailPeer: got %q, %v; want %q", buf[:n], err, p.msg)
		}
	}
	pf.FailPeer("no-such-node", errors.New("unknown")) // a no-op
}

// testAbortReasonBounded: a peer's long abort reason is stored truncated.
func testAbortReasonBounded(t *testing.T, f Factory) {
	eps := f(t, IDs(2))
	a, b := conn(t, eps[0], eps[1].ID()), conn(t, eps[1], eps[0].ID())
	ctx := ctxT(t)
	tag := transport.Tag{Epoch: 9, Op: 1}
	if err := a.Abort(ctx, tag, errors.New(strings.Repeat("x", 64<<10))); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		rctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
		_, err := b.Recv(rctx, tag, make([]byte, 8))
		cancel()
		var ae *transport.AbortError
		if errors.As(err, &ae) {
			if len(ae.Reason) > transport.MaxReasonLen {
				t.Fatalf("stored reason is %d bytes, limit %d", len(ae.Reason), transport.MaxReasonLen)
			}
			if !strings.HasPrefix(ae.Reason, "xxxx") {
				t.Fatalf("reason %.20q lost its start", ae.Reason)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("recv after the peer's abort: %v, want ErrAborted", err)
		}
	}
}

func checkNames(t testing.TB, err error, peer string) {
	t.Helper()
	if !strings.Contains(err.Error(), peer) {
		t.Errorf("error %q does not name peer %s", err, peer)
	}
}
