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

func checkNames(t testing.TB, err error, peer string) {
	t.Helper()
	if !strings.Contains(err.Error(), peer) {
		t.Errorf("error %q does not name peer %s", err, peer)
	}
}
