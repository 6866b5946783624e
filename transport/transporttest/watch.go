package transporttest

import (
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/ringtrain/ringtrain/transport"
)

// seen collects the connections a WatchConns callback announces.
type seen struct {
	mu    sync.Mutex
	conns []transport.Conn
	wake  chan struct{}
}

func newSeen() *seen { return &seen{wake: make(chan struct{}, 1)} }

func (s *seen) add(c transport.Conn) {
	s.mu.Lock()
	s.conns = append(s.conns, c)
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

func (s *seen) peers() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var ids []string
	for _, c := range s.conns {
		ids = append(ids, c.Peer())
	}
	return ids
}

// await waits until n connections were announced and returns them.
func (s *seen) await(t *testing.T, who string, n int) []transport.Conn {
	t.Helper()
	deadline := time.After(20 * time.Second)
	for {
		s.mu.Lock()
		if len(s.conns) >= n {
			out := slices.Clone(s.conns)
			s.mu.Unlock()
			return out
		}
		s.mu.Unlock()
		select {
		case <-s.wake:
		case <-deadline:
			t.Fatalf("%s: %d connections announced (%v), want %d", who, len(s.peers()), s.peers(), n)
		}
	}
}

// testWatchConns: a dial is announced on both ends, exactly once each; the
// accepting end's announced connection reads what the dialer sends;
// Connected lists exactly the connected peers; a stopped watch hears of
// nothing more; a connection that was failed and made again is announced
// again.
func testWatchConns(t *testing.T, f Factory) {
	eps := f(t, IDs(3))
	ws := make([]transport.ConnWatcher, len(eps))
	for i, e := range eps {
		w, ok := e.(transport.ConnWatcher)
		if !ok {
			t.Fatalf("%T does not implement transport.ConnWatcher", e)
		}
		ws[i] = w
	}
	ctx := ctxT(t)
	sa, sb := newSeen(), newSeen()
	stopA := ws[0].WatchConns(sa.add)
	defer stopA()
	stopB := ws[1].WatchConns(sb.add)
	defer stopB()
	for i, w := range ws {
		if got := w.Connected(); len(got) != 0 {
			t.Fatalf("%s: Connected before any dial = %v, want none", eps[i].ID(), got)
		}
	}

	ca := conn(t, eps[0], eps[1].ID())
	cb := sb.await(t, eps[1].ID(), 1)[0]
	if cb.Peer() != eps[0].ID() {
		t.Fatalf("%s announced a connection to %s, want %s", eps[1].ID(), cb.Peer(), eps[0].ID())
	}
	if got := sa.await(t, eps[0].ID(), 1); got[0] != ca {
		t.Errorf("%s announced another connection than Conn returned", eps[0].ID())
	}
	tag := transport.Tag{Epoch: 3, Op: 9}
	if err := ca.Send(ctx, tag, []byte("hello")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 5)
	if n, err := cb.Recv(ctx, tag, buf); err != nil || string(buf[:n]) != "hello" {
		t.Fatalf("Recv on the announced connection: %q, %v", buf[:n], err)
	}
	want := map[int][]string{0: {eps[1].ID()}, 1: {eps[0].ID()}, 2: nil}
	for i, w := range ws {
		if got := w.Connected(); !slices.Equal(got, want[i]) {
			t.Errorf("%s: Connected = %v, want %v", eps[i].ID(), got, want[i])
		}
	}

	// A watch started now is told of the live connection at once.
	late := newSeen()
	stopLate := ws[1].WatchConns(late.add)
	if got := late.peers(); !slices.Equal(got, []string{eps[0].ID()}) {
		t.Errorf("a late watch on %s was told of %v, want [%s]", eps[1].ID(), got, eps[0].ID())
	}
	stopLate()

	stopA()
	conn(t, eps[0], eps[2].ID())
	if pf, ok := eps[1].(transport.PeerFailer); ok {
		pf.FailPeer(eps[0].ID(), errors.New("declared dead by the test"))
		conn(t, eps[1], eps[0].ID())
		got := sb.await(t, eps[1].ID(), 2)
		if len(got) != 2 || got[1].Peer() != eps[0].ID() || got[1] == got[0] {
			t.Errorf("%s announced %v after FailPeer and a new dial, want a second, new connection to %s", eps[1].ID(), sb.peers(), eps[0].ID())
		}
	}
	if got := sa.peers(); !slices.Equal(got, []string{eps[1].ID()}) {
		t.Errorf("%s announced %v after its watch stopped, want only [%s]", eps[0].ID(), got, eps[1].ID())
	}
	if got := ws[1].Connected(); !slices.Equal(got, []string{eps[0].ID()}) {
		t.Errorf("%s: Connected = %v, want [%s]", eps[1].ID(), got, eps[0].ID())
	}
}
