package tcp

import (
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ringtrain/ringtrain/collective/collectivetest"
	"github.com/ringtrain/ringtrain/internal/secret"
	"github.com/ringtrain/ringtrain/transport"
	"github.com/ringtrain/ringtrain/transport/transporttest"
)

func lanesOpt(k int) func(*Config) { return func(c *Config) { c.Lanes = k } }

// laneFactory is the transporttest factory with 3 lanes per peer pair.
func laneFactory(t testing.TB, ids []string) []transport.Endpoint {
	eps := newCluster(t, testSecret(), ids, lanesOpt(3))
	out := make([]transport.Endpoint, len(eps))
	for i, e := range eps {
		out[i] = e
	}
	return out
}

// TestConformanceLanes: the transport conformance suite with 3 lanes.
func TestConformanceLanes(t *testing.T) { transporttest.Run(t, laneFactory) }

// TestCollectiveConformanceLanes: the collective suite over 3 lanes, with
// the collective's split (collectivetest's lanes cases) among them.
func TestCollectiveConformanceLanes(t *testing.T) {
	o := collectivetest.Options{MaxPeers: 8, PeerCounts: []int{1, 2, 3, 5, 8}}
	collectivetest.Run(t, laneFactory, o)
}

func TestLaneOf(t *testing.T) {
	tests := []struct {
		name  string
		tag   transport.Tag
		lanes int
		want  int
	}{
		{"one lane", transport.Tag{Epoch: 3, Op: 7}, 1, 0},
		{"op 0", transport.Tag{Op: 0}, 3, 0},
		{"op 4 of 3", transport.Tag{Op: 4}, 3, 1},
		{"op 5 of 3", transport.Tag{Op: 5}, 3, 2},
		{"epoch does not count", transport.Tag{Epoch: 1, Op: 5}, 3, 2},
		{"control on lane 0", transport.Tag{Op: transport.ControlOpBase + 1}, 3, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := laneOf(tt.tag, tt.lanes); got != tt.want {
				t.Fatalf("laneOf(%v, %d) = %d, want %d", tt.tag, tt.lanes, got, tt.want)
			}
		})
	}
}

// TestLanesRoute: each tag's calls run on its lane, on both ends, and the
// payloads arrive intact.
func TestLanesRoute(t *testing.T) {
	eps := newCluster(t, testSecret(), []string{"a", "b"}, lanesOpt(3))
	ctx := ctxT(t, 20*time.Second)
	ca, err := eps[0].Conn(ctx, "b")
	if err != nil {
		t.Fatal(err)
	}
	cb, err := eps[1].Conn(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	const ops = 7
	var wg sync.WaitGroup
	errs := make([]error, ops)
	for op := range uint64(ops) {
		tag := transport.Tag{Epoch: 1, Op: op}
		msg := bytes.Repeat([]byte{byte(op)}, 600<<10+int(op)) // several sub-frames
		wg.Go(func() { errs[op] = ca.Send(ctx, tag, msg) })
		wg.Go(func() {
			buf := make([]byte, len(msg))
			n, err := cb.Recv(ctx, tag, buf)
			if err == nil && (n != len(msg) || !bytes.Equal(buf, msg)) {
				err = fmt.Errorf("op %d: got %d bytes, not the message", op, n)
			}
			if err != nil {
				errs[op] = err
			}
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range []transport.Conn{ca, cb} {
		lanes := c.(*conn).all()
		if len(lanes) != 3 {
			t.Fatalf("%d lanes, want 3", len(lanes))
		}
		// Ops 0..6 over 3 lanes: 3, 2, 2 calls each.
		for i, want := range []uint64{3, 2, 2} {
			if got := lanes[i].calls.Load(); got != want {
				t.Errorf("lane %d ran %d calls, want %d", i, got, want)
			}
		}
	}
}

// TestLanesMismatchRefused: nodes with different Lanes refuse each other
// at once, and the error names both counts.
func TestLanesMismatchRefused(t *testing.T) {
	a := newCluster(t, testSecret(), []string{"a"}, lanesOpt(2))[0]
	b := newCluster(t, testSecret(), []string{"b"}, nil)[0]
	a.AddPeer("b", b.Addr().String())
	b.AddPeer("a", a.Addr().String())
	tests := []struct {
		name     string
		from, to *Endpoint
		want     string
	}{
		{"2 dials 1", a, b, "the dialer uses 2 lanes (connections per peer), this node 1"},
		{"1 dials 2", b, a, "the dialer uses 1 lanes (connections per peer), this node 2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			start := time.Now()
			_, err := tt.from.Conn(ctxT(t, 20*time.Second), tt.to.ID())
			if !errors.Is(err, transport.ErrProtocol) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want ErrProtocol saying %q", err, tt.want)
			}
			checkPeer(t, err, tt.to.ID())
			if d := time.Since(start); d > 5*time.Second {
				t.Fatalf("refusal took %v; it must not be retried", d)
			}
		})
	}
}

// TestLanesBrokenLaneKillsBundle: when one lane's socket breaks, calls on
// every lane fail with ErrPeerLost, and the next Conn dials a new bundle.
func TestLanesBrokenLaneKillsBundle(t *testing.T) {
	eps := newCluster(t, testSecret(), []string{"a", "b"}, lanesOpt(3))
	ctx := ctxT(t, 20*time.Second)
	ca, err := eps[0].Conn(ctx, "b")
	if err != nil {
		t.Fatal(err)
	}
	cb, err := eps[1].Conn(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	recvErr := make(chan error, 1)
	go func() {
		_, err := cb.Recv(ctx, transport.Tag{Epoch: 1, Op: 0}, make([]byte, 8)) // lane 0
		recvErr <- err
	}()
	ca.(*conn).all()[2].raw.Close() // break lane 2 under a's feet
	if err := <-recvErr; !errors.Is(err, transport.ErrPeerLost) {
		t.Fatalf("recv on lane 0 after lane 2 broke: %v, want ErrPeerLost", err)
	}
	// b saw its lane end; a's own reader of lane 2 ends the bundle on a
	// goroutine of its own, lane after lane: wait for all of them before
	// a Send must fail (one racing the kill may still be written).
	for i, l := range ca.(*conn).all() {
		select {
		case <-l.dead:
		case <-ctx.Done():
			t.Fatalf("lane %d of a's bundle did not end after its lane 2 broke", i)
		}
	}
	checkPeer(t, ca.Send(ctx, transport.Tag{Epoch: 1, Op: 1}, []byte("x")), "b")
	if !ca.(*conn).Dead() {
		t.Fatal("the bundle is not dead after a lane broke")
	}
	// A new bundle works.
	c2, err := eps[0].Conn(ctx, "b")
	if err != nil {
		t.Fatal(err)
	}
	if c2 == ca {
		t.Fatal("Conn returned the dead bundle")
	}
	tag := transport.Tag{Epoch: 1, Op: 5}
	done := make(chan error, 1)
	go func() { done <- c2.Send(ctx, tag, []byte("again")) }()
	cb2, err := eps[1].Conn(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 16)
	if n, err := cb2.Recv(ctx, tag, buf); err != nil || string(buf[:n]) != "again" {
		t.Fatalf("recv on the new bundle: %q, %v", buf[:n], err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestLanesWrongLaneIsViolation: a frame on another lane than its tag's
// closes the bundle with ErrProtocol naming the lanes.
func TestLanesWrongLaneIsViolation(t *testing.T) {
	eps := newCluster(t, testSecret(), []string{"a", "b"}, lanesOpt(2))
	ctx := ctxT(t, 20*time.Second)
	ca, err := eps[0].Conn(ctx, "b")
	if err != nil {
		t.Fatal(err)
	}
	cb, err := eps[1].Conn(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	tag := transport.Tag{Epoch: 1, Op: 0} // lane 0
	l1 := ca.(*conn).all()[1]
	l1.mu.Lock()
	l1.controlLocked(header{kind: kindBegin, tag: tag, length: 4}, nil)
	l1.mu.Unlock()
	_, err = cb.Recv(ctx, tag, make([]byte, 4))
	if !errors.Is(err, transport.ErrProtocol) || !strings.Contains(err.Error(), "on lane 1 of 2, its lane is 0") {
		t.Fatalf("got %v, want ErrProtocol about the lane", err)
	}
}

// TestLanesMissingLaneRefused: a dialer whose lanes 1.. never come is
// refused after the handshake timeout, and the acceptor keeps nothing.
func TestLanesMissingLaneRefused(t *testing.T) {
	e := newCluster(t, testSecret(), []string{"b"}, func(c *Config) { c.Lanes = 2; c.HandshakeTimeout = 300 * time.Millisecond })[0]
	tests := []struct {
		name string
		lane uint8
		want string
	}{
		{"lane 0 alone", 0, "not all 2 lanes of the connection arrived"},
		{"lane 1 alone", 1, ""}, // closed without an ack
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := rawLane(t, e, "a", helloMsg{version: protocolVersion, incarnation: 1, lanes: 2, lane: tt.lane, bundle: 9, to: e.ID()})
			c.SetDeadline(time.Now().Add(5 * time.Second))
			p, err := readFrame(c, kindAck)
			switch {
			case tt.want == "" && err == nil:
				t.Fatalf("got an ack %x for a lone lane %d", p, tt.lane)
			case tt.want != "":
				if err != nil {
					t.Fatalf("reading the ack: %v", err)
				}
				ack, err := decodeAck(p)
				if err != nil || ack.accepted || !strings.Contains(ack.reason, tt.want) {
					t.Fatalf("ack %+v, %v; want a refusal saying %q", ack, err, tt.want)
				}
			}
			// Both refusals withdraw the pending bundle before the
			// dialer can see them (the refusal ack, or the close of a
			// lone lane), so nothing is left by now.
			e.pmu.Lock()
			n := len(e.pend)
			e.pmu.Unlock()
			if n != 0 {
				t.Fatalf("%d bundles still pending after the refusal", n)
			}
			if got := e.Connected(); len(got) != 0 {
				t.Fatalf("connected to %v", got)
			}
		})
	}
}

// rawLane connects to e as member id over TLS and sends hello h.
func rawLane(t *testing.T, e *Endpoint, id string, h helloMsg) *tls.Conn {
	t.Helper()
	cl, err := secret.New(testSecret())
	if err != nil {
		t.Fatal(err)
	}
	node, err := cl.Node(id)
	if err != nil {
		t.Fatal(err)
	}
	tc := node.ClientConfig(e.ID())
	tc.NextProtos = []string{ALPN}
	d := tls.Dialer{NetDialer: &net.Dialer{Timeout: 5 * time.Second}, Config: tc}
	nc, err := d.DialContext(ctxT(t, 5*time.Second), "tcp", e.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c := nc.(*tls.Conn)
	t.Cleanup(func() { c.Close() })
	if err := writeFrame(c, kindHello, h.appendTo(nil)); err != nil {
		t.Fatal(err)
	}
	return c
}

// TestLanesConfig: Lanes out of range is refused at Listen.
func TestLanesConfig(t *testing.T) {
	tests := []struct {
		name  string
		lanes int
		ok    bool
	}{
		{"default", 0, true},
		{"one", 1, true},
		{"max", maxLanes, true},
		{"over", maxLanes + 1, false},
		{"negative", -1, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Config{ID: "a", Secret: testSecret(), Lanes: tt.lanes}.withDefaults()
			if (err == nil) != tt.ok {
				t.Fatalf("Lanes %d: %v, want ok=%v", tt.lanes, err, tt.ok)
			}
		})
	}
}
