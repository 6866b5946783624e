package peers

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/ringtrain/ringtrain/transport"
)

// testConn is a connection as the table sees it; nothing travels on it.
type testConn struct {
	peer       string
	dialedByMe bool
	inc        uint64

	mu                          sync.Mutex
	dead                        bool
	started, replaced, discards int
}

func (c *testConn) Peer() string                                      { return c.peer }
func (c *testConn) Send(context.Context, transport.Tag, []byte) error { return errors.ErrUnsupported }
func (c *testConn) Recv(context.Context, transport.Tag, []byte) (int, error) {
	return 0, errors.ErrUnsupported
}
func (c *testConn) Abort(context.Context, transport.Tag, error) error { return errors.ErrUnsupported }
func (c *testConn) Dead() bool                                        { c.mu.Lock(); defer c.mu.Unlock(); return c.dead }
func (c *testConn) Origin() (bool, uint64)                            { return c.dialedByMe, c.inc }
func (c *testConn) Start()                                            { c.mu.Lock(); c.started++; c.mu.Unlock() }
func (c *testConn) Replaced()                                         { c.mu.Lock(); c.replaced++; c.dead = true; c.mu.Unlock() }
func (c *testConn) Discard()                                          { c.mu.Lock(); c.discards++; c.dead = true; c.mu.Unlock() }

func (c *testConn) counts() [3]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return [3]int{c.started, c.replaced, c.discards}
}

func TestAdmits(t *testing.T) {
	for _, tc := range []struct {
		name string
		p    pair
		want bool
	}{
		{"no connection, not dialing", pair{self: "a", peer: "b", inc: 1}, true},
		{"lower ID dialing: our dial wins", pair{self: "a", peer: "b", dialing: true, inc: 1}, false},
		{"higher ID dialing: the peer's dial wins", pair{self: "b", peer: "a", dialing: true, inc: 1}, true},
		{"same incarnation, lower ID dialed the live one", pair{self: "a", peer: "b", live: true, liveDialedByMe: true, liveInc: 1, inc: 1}, false},
		{"same incarnation, the peer dialed the live one", pair{self: "a", peer: "b", live: true, liveInc: 1, inc: 1}, true},
		{"same incarnation, higher ID dialed the live one", pair{self: "b", peer: "a", live: true, liveDialedByMe: true, liveInc: 1, inc: 1}, true},
		{"restarted peer replaces the live one", pair{self: "a", peer: "b", live: true, liveDialedByMe: true, liveInc: 1, inc: 2}, true},
		{"restarted peer while the lower ID dials", pair{self: "a", peer: "b", live: true, liveInc: 1, dialing: true, inc: 2}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := admits(tc.p); got != tc.want {
				t.Errorf("admits(%+v) = %v, want %v", tc.p, got, tc.want)
			}
		})
	}
}

func TestSweep(t *testing.T) {
	c1, c2 := &testConn{peer: "b"}, &testConn{peer: "c"}
	t0 := time.Unix(1000, 0)
	const after = 4 * time.Second
	for _, tc := range []struct {
		name        string
		marks       map[*testConn]idleMark
		samples     []sample[*testConn]
		now         time.Time
		wantNext    map[*testConn]idleMark
		wantExpired []*testConn
	}{
		{"first sight starts the clock", nil, []sample[*testConn]{{c: c1, traffic: 5}}, t0,
			map[*testConn]idleMark{c1: {5, t0}}, nil},
		{"quiet for less than after", map[*testConn]idleMark{c1: {5, t0}}, []sample[*testConn]{{c: c1, traffic: 5}}, t0.Add(after - 1),
			map[*testConn]idleMark{c1: {5, t0}}, nil},
		{"quiet for after expires", map[*testConn]idleMark{c1: {5, t0}}, []sample[*testConn]{{c: c1, traffic: 5}}, t0.Add(after),
			map[*testConn]idleMark{}, []*testConn{c1}},
		{"traffic restarts the clock", map[*testConn]idleMark{c1: {5, t0}}, []sample[*testConn]{{c: c1, traffic: 6}}, t0.Add(after),
			map[*testConn]idleMark{c1: {6, t0.Add(after)}}, nil},
		{"busy restarts the clock", map[*testConn]idleMark{c1: {5, t0}}, []sample[*testConn]{{c: c1, traffic: 5, busy: true}}, t0.Add(after),
			map[*testConn]idleMark{c1: {5, t0.Add(after)}}, nil},
		{"a connection not sampled is forgotten", map[*testConn]idleMark{c1: {5, t0}, c2: {1, t0}}, []sample[*testConn]{{c: c2, traffic: 1}}, t0.Add(after),
			map[*testConn]idleMark{}, []*testConn{c2}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			next, expired := sweep(tc.marks, tc.samples, tc.now, after)
			if len(next) != len(tc.wantNext) {
				t.Errorf("next = %v, want %v", next, tc.wantNext)
			}
			for c, mk := range tc.wantNext {
				if next[c] != mk {
					t.Errorf("next[%s] = %+v, want %+v", c.peer, next[c], mk)
				}
			}
			if !slices.Equal(expired, tc.wantExpired) {
				t.Errorf("expired = %v, want %v", expired, tc.wantExpired)
			}
		})
	}
}

// newTestTable is a table for node self whose dials return what dial does.
func newTestTable(ctx context.Context, self string, dial func(ctx context.Context, peer, addr string) (*testConn, error)) *Table[*testConn] {
	return New(Config[*testConn]{
		Self: self, Peers: map[string]string{"a": "addr-a", "b": "addr-b"},
		DialOnce: dial, Permanent: func(err error) bool { return errors.Is(err, ErrDuplicate) },
		HandshakeTimeout: 5 * time.Second, Done: ctx,
	})
}

// TestDuplicateWaitsForPeer: a dial the peer refuses as a duplicate waits
// for the peer's own connection and returns it, dialing no more.
func TestDuplicateWaitsForPeer(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := t.Context()
		dials := 0
		tab := newTestTable(ctx, "b", func(context.Context, string, string) (*testConn, error) {
			dials++
			return nil, ErrDuplicate
		})
		got := make(chan *testConn, 1)
		go func() {
			c, err := tab.conn(ctx, "a")
			if err != nil {
				t.Errorf("Conn: %v", err)
			}
			got <- c
		}()
		synctest.Wait() // the dial was refused; Conn waits for a's dial
		in := &testConn{peer: "a", inc: 7}
		if err := tab.Admit("a", 7, func() (*testConn, error) { return in, nil }); err != nil {
			t.Fatalf("Admit: %v", err)
		}
		if c := <-got; c != in || dials != 1 || in.counts() != [3]int{1, 0, 0} {
			t.Errorf("Conn = %p (want %p) after %d dials, counts %v; want 1 dial, started once", c, in, dials, in.counts())
		}
	})
}

// TestFailPeerEndsWaiters: FailPeer during a dial ends it, and the Conn
// calls waiting for that dial, with the verdict; a later Conn dials again.
func TestFailPeerEndsWaiters(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := t.Context()
		verdict := errors.Join(transport.ErrPeerLost, errors.New("declared dead"))
		block := true
		tab := newTestTable(ctx, "a", func(ctx context.Context, peer, _ string) (*testConn, error) {
			if block {
				<-ctx.Done()
				return nil, context.Cause(ctx)
			}
			return &testConn{peer: peer, dialedByMe: true}, nil
		})
		errs := make(chan error, 2)
		for range 2 {
			go func() {
				_, err := tab.Conn(ctx, "b")
				errs <- err
			}()
		}
		synctest.Wait()
		if _, ok := tab.FailPeer("b", verdict); !ok {
			t.Fatal("FailPeer found no entry for b")
		}
		for range 2 {
			if err := <-errs; !errors.Is(err, transport.ErrPeerLost) {
				t.Errorf("Conn during FailPeer: %v, want the verdict", err)
			}
		}
		block = false
		c, err := tab.conn(ctx, "b")
		if err != nil || tab.Connected()[0] != "b" || c.counts() != [3]int{1, 0, 0} {
			t.Errorf("Conn after FailPeer: %v, %v; Connected %v", c, err, tab.Connected())
		}
	})
}

// TestRestartReplaces: a connection from a new incarnation replaces the
// live one; a duplicate from the same incarnation is refused when our own
// connection wins; watchers see each installed connection once.
func TestRestartReplaces(t *testing.T) {
	tab := newTestTable(t.Context(), "a", func(context.Context, string, string) (*testConn, error) {
		return &testConn{peer: "b", dialedByMe: true, inc: 1}, nil
	})
	var seen []transport.Conn
	stop := tab.WatchConns(func(c transport.Conn) { seen = append(seen, c) })
	defer stop()
	mine, err := tab.conn(t.Context(), "b")
	if err != nil {
		t.Fatal(err)
	}
	dup := &testConn{peer: "b", inc: 1}
	if err := tab.Admit("b", 1, func() (*testConn, error) { return dup, nil }); !errors.Is(err, ErrDuplicate) {
		t.Errorf("Admit of a duplicate: %v, want ErrDuplicate", err)
	}
	restarted := &testConn{peer: "b", inc: 2}
	if err := tab.Admit("b", 2, func() (*testConn, error) { return restarted, nil }); err != nil {
		t.Errorf("Admit of a restarted peer: %v", err)
	}
	if c, _ := tab.Get("b"); c != restarted || mine.counts() != [3]int{1, 1, 0} || dup.counts() != [3]int{} {
		t.Errorf("installed %p (want the restarted %p); counts mine %v dup %v", c, restarted, mine.counts(), dup.counts())
	}
	if len(seen) != 2 || seen[0] != mine || seen[1] != restarted {
		t.Errorf("watchers saw %v, want [mine restarted]", seen)
	}
	if conns, ok := tab.Close(); !ok || len(conns) != 1 || conns[0] != restarted {
		t.Errorf("Close = %v, %v", conns, ok)
	}
	if err := tab.Admit("b", 3, func() (*testConn, error) { return nil, nil }); !errors.Is(err, transport.ErrClosed) {
		t.Errorf("Admit after Close: %v, want ErrClosed", err)
	}
}

// TestIdleLoop: a connection without traffic is closed After it went
// quiet; one KeepOpen names is not; one with traffic lives on.
func TestIdleLoop(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		const after = time.Minute
		tab := newTestTable(ctx, "x", nil)
		conns := map[string]*testConn{}
		for _, id := range []string{"a", "b", "c"} {
			c := &testConn{peer: id, inc: 1}
			conns[id] = c
			if err := tab.Admit(id, 1, func() (*testConn, error) { return c, nil }); err != nil {
				t.Fatal(err)
			}
		}
		tab.KeepOpen("b")
		var mu sync.Mutex
		traffic := map[*testConn]uint64{}
		closedAt := map[string]time.Duration{}
		start := time.Now()
		var wg sync.WaitGroup
		wg.Go(func() {
			tab.IdleLoop(ctx, Idle[*testConn]{
				After: after,
				Activity: func(c *testConn) (uint64, bool) {
					mu.Lock()
					defer mu.Unlock()
					return traffic[c], false
				},
				Close: func(c *testConn) { closedAt[c.peer] = time.Since(start); c.Discard() },
			})
		})
		for range 20 { // c talks every 10 s for 200 s
			time.Sleep(10 * time.Second)
			mu.Lock()
			traffic[conns["c"]]++
			mu.Unlock()
		}
		cancel()
		wg.Wait()
		// The loop first sees a at its first tick (after/4) and closes it
		// at the tick after/4 + after.
		want := map[string]time.Duration{"a": after/4 + after}
		if len(closedAt) != len(want) || closedAt["a"] != want["a"] {
			t.Errorf("closed %v, want %v", closedAt, want)
		}
		if got := tab.Connected(); !slices.Equal(got, []string{"b", "c"}) {
			t.Errorf("Connected = %v, want [b c]", got)
		}
	})
}
