package quic

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/ringtrain/ringtrain/transport"
)

// waitConnected polls until e's Connected equals want, or fails after d.
func waitConnected(t *testing.T, e *Endpoint, want []string, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		got := e.Connected()
		if slices.Equal(got, want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: Connected = %v after %v, want %v", e.ID(), got, d, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestIdleClose: with Config.IdleClose, a connection that carried nothing
// for that long is closed on both ends; a Recv waiting on a control tag
// ends with an error that is not a loss (wraps ErrClosed, not ErrPeerLost);
// a Recv waiting on a data tag keeps its end open, and KeepOpen on both
// ends keeps the pair; the next Conn dials again and works.
func TestIdleClose(t *testing.T) {
	const idle = 300 * time.Millisecond
	eps := newCluster(t, testSecret(), []string{"a", "b"}, func(c *Config) { c.IdleClose = idle })
	a, b := eps[0], eps[1]
	ctx := ctxT(t, 30*time.Second)
	ctrl := transport.Tag{Op: transport.ControlOpBase}
	data := transport.Tag{Epoch: 1, Op: 1}
	buf := make([]byte, 8)

	exchange := func() (transport.Conn, transport.Conn) {
		t.Helper()
		ca, err := a.Conn(ctx, "b")
		if err != nil {
			t.Fatal(err)
		}
		if err := ca.Send(ctx, ctrl, []byte("ping")); err != nil {
			t.Fatal(err)
		}
		cb, err := b.Conn(ctx, "a")
		if err != nil {
			t.Fatal(err)
		}
		if n, err := cb.Recv(ctx, ctrl, buf); err != nil || string(buf[:n]) != "ping" {
			t.Fatalf("recv %q, %v", buf[:n], err)
		}
		return ca, cb
	}

	// A control receiver waiting on the connection does not keep it open.
	_, cb := exchange()
	recvErr := make(chan error, 1)
	go func() {
		_, err := cb.Recv(ctx, ctrl, buf)
		recvErr <- err
	}()
	start := time.Now()
	waitConnected(t, a, nil, 20*idle)
	waitConnected(t, b, nil, 20*idle)
	if d := time.Since(start); d < idle {
		t.Errorf("closed after %v, before IdleClose %v", d, idle)
	}
	err := <-recvErr
	if !errors.Is(err, transport.ErrClosed) || errors.Is(err, transport.ErrPeerLost) {
		t.Errorf("control Recv on an idle-closed connection: %v; want ErrClosed, not ErrPeerLost", err)
	}

	// A data Recv in progress keeps its own end open (each end decides
	// alone: a exempts b here, as node exempts its ring neighbours on both
	// ends); the next Conn dialed anew.
	a.KeepOpen("b")
	_, cb = exchange()
	go func() {
		_, err := cb.Recv(ctx, data, buf)
		recvErr <- err
	}()
	time.Sleep(4 * idle)
	if got := b.Connected(); !slices.Equal(got, []string{"a"}) {
		t.Errorf("b: Connected = %v with a data Recv waiting, want [a]", got)
	}
	ca, err := a.Conn(ctx, "b")
	if err != nil {
		t.Fatal(err)
	}
	if err := ca.Send(ctx, data, []byte("data")); err != nil {
		t.Fatal(err)
	}
	if err := <-recvErr; err != nil {
		t.Fatalf("data Recv: %v", err)
	}
	waitConnected(t, b, nil, 20*idle) // b closes it once the Recv is done
	waitConnected(t, a, nil, 20*idle)

	// KeepOpen on both ends exempts the pair.
	a.KeepOpen("b")
	b.KeepOpen("a")
	exchange()
	time.Sleep(4 * idle)
	for _, e := range eps {
		if got := e.Connected(); len(got) != 1 {
			t.Errorf("%s: Connected = %v with KeepOpen, want the peer", e.ID(), got)
		}
	}
	b.KeepOpen()
	waitConnected(t, b, nil, 20*idle)
}
