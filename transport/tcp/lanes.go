package tcp

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/ringtrain/ringtrain/transport"
)

// Lanes (Config.Lanes = k > 1): the connection to a peer is a bundle of k
// TLS connections, so that one ring step seals and opens its bytes on k
// cores instead of one (a TLS session is sequential: one core per
// direction and end). Invariants:
//   - A data tag's frames, both ways, travel on lane Op mod k; control tags
//     (Op ≥ transport.ControlOpBase) on lane 0. Per-tag state lives in the
//     lane's conn, so the per-connection rules (order, credit, cancel,
//     abort, refuse) hold per tag unchanged. A frame on the wrong lane
//     breaks the protocol.
//   - The dialer opens all k lanes (TCP, TLS, a hello naming lane i of
//     bundle b) before it reads the ack on lane 0; the acceptor waits,
//     within the handshake timeout, until all k have arrived, then admits
//     the bundle as one connection (duplicates and restarted peers are
//     decided on it, as for one connection) and acks lane 0. Both ends
//     need the same k: the acceptor refuses another, naming both.
//   - The peer table holds lane 0's conn, which routes every call to its
//     lane. The bundle is dead once any lane is: a broken lane, a protocol
//     violation, FailPeer, a replacement or a discard ends every lane with
//     the same error. A goodbye or idle frame ends only its own lane, so
//     the other lanes still read what was sent before theirs.

// maxLanes bounds Config.Lanes (and a hello's lanes).
const maxLanes = 16

// bundle ties the lanes of one connection together; nil when k = 1.
type bundle struct {
	lanes []*conn
	once  sync.Once
}

// kill ends every lane with err.
func (b *bundle) kill(err error) {
	b.once.Do(func() {
		for _, l := range b.lanes {
			l.killLane(err)
		}
	})
}

// all returns c's lanes (c alone without lanes).
func (c *conn) all() []*conn {
	if c.b == nil {
		return []*conn{c}
	}
	return c.b.lanes
}

// laneOf is the lane that carries tag.
func laneOf(tag transport.Tag, lanes int) int {
	if lanes <= 1 || tag.Op >= transport.ControlOpBase {
		return 0
	}
	return int(tag.Op % uint64(lanes))
}

// route returns the lane conn for tag's calls.
func (c *conn) route(tag transport.Tag) *conn {
	if c.b == nil {
		return c
	}
	return c.b.lanes[laneOf(tag, len(c.b.lanes))]
}

// sock is one established TCP+TLS connection during the handshake, before
// it becomes a lane.
type sock struct {
	raw    *net.TCPConn
	bc     *bufConn
	tc     *tls.Conn
	stopFn func() bool // stops the handshake deadline's AfterFunc

	stopOnce sync.Once
	stopOK   bool
}

// stopDeadline stops the handshake deadline's AfterFunc; it reports false
// if that already fired. The first call decides (a lane's own handler
// stops it when it returns, after lane 0's handler has taken it).
func (s *sock) stopDeadline() bool {
	s.stopOnce.Do(func() { s.stopOK = s.stopFn() })
	return s.stopOK
}

// release ends the handshake phase of s: no deadline, buffered writes. It
// reports false if the handshake's deadline already fired.
func (s *sock) release() bool {
	if !s.stopDeadline() {
		return false
	}
	s.raw.SetDeadline(time.Time{})
	s.bc.setBuffered()
	return true
}

func closeSocks(ss []*sock) {
	for _, s := range ss {
		if s != nil {
			s.raw.Close()
		}
	}
}

// newBundle makes the conns of socks (lane i = socks[i]) and returns lane
// 0's, which the peer table holds.
func (e *Endpoint) newBundle(peer string, socks []*sock, dialedByMe bool, peerInc uint64) *conn {
	lanes := make([]*conn, len(socks))
	for i, s := range socks {
		lanes[i] = newConn(e, peer, s.raw, s.bc, s.tc, dialedByMe, peerInc)
		lanes[i].lane, lanes[i].nlanes = i, len(socks)
	}
	if len(lanes) > 1 {
		b := &bundle{lanes: lanes}
		for _, l := range lanes {
			l.b = b
		}
	}
	return lanes[0]
}

// pendKey names a bundle whose lanes are arriving.
type pendKey struct {
	peer   string
	bundle uint64
}

// pendBundle collects the lanes 1..k-1 of a bundle for its lane 0's
// handler; guarded by Endpoint.pmu.
type pendBundle struct {
	socks   []*sock // by lane; socks[0] stays nil
	inc     uint64  // the incarnation the lanes announced
	got     int     // lanes 1..k-1 deposited
	primary bool    // lane 0's handler waits for them
	ready   chan struct{}
	done    chan struct{} // closed once lane 0's handler took the lanes or gave up
}

func (e *Endpoint) pendLocked(k pendKey, lanes int, inc uint64) *pendBundle {
	pb := e.pend[k]
	if pb == nil {
		pb = &pendBundle{socks: make([]*sock, lanes), inc: inc, ready: make(chan struct{}), done: make(chan struct{})}
		e.pend[k] = pb
	}
	return pb
}

// depositLane hands lane h.lane of a bundle to its lane 0's handler and
// waits until that one has taken it or ctx (the handshake's) ends; the
// socket is closed here only if nobody took it. It returns a reason to
// refuse, or "".
func (e *Endpoint) depositLane(ctx context.Context, peer string, h helloMsg, s *sock) string {
	k := pendKey{peer: peer, bundle: h.bundle}
	e.pmu.Lock()
	pb := e.pendLocked(k, int(h.lanes), h.incarnation)
	switch {
	case len(pb.socks) != int(h.lanes) || pb.inc != h.incarnation:
		e.pmu.Unlock()
		return fmt.Sprintf("lane %d of bundle %x does not match its other lanes", h.lane, h.bundle)
	case pb.socks[h.lane] != nil:
		e.pmu.Unlock()
		return fmt.Sprintf("lane %d of bundle %x twice", h.lane, h.bundle)
	}
	pb.socks[h.lane] = s
	if pb.got++; pb.got == len(pb.socks)-1 {
		close(pb.ready)
	}
	e.pmu.Unlock()
	select {
	case <-pb.done:
		return ""
	case <-ctx.Done():
	}
	e.pmu.Lock()
	defer e.pmu.Unlock()
	if e.pend[k] == pb { // lane 0 did not come in time: withdraw
		pb.socks[h.lane] = nil
		if pb.got--; pb.got == 0 && !pb.primary {
			delete(e.pend, k)
		}
		s.raw.Close()
	}
	return ""
}

// collectLanes is lane 0's side: it waits for lanes 1..k-1 of its bundle
// and returns them all (lane 0 = s), or nil if they did not all arrive
// within three quarters of the time ctx has left (the rest is for the
// refusal to reach the dialer). The caller must call finish once it has installed or
// closed them.
func (e *Endpoint) collectLanes(ctx context.Context, peer string, h helloMsg, s *sock) (socks []*sock, finish func()) {
	k := pendKey{peer: peer, bundle: h.bundle}
	e.pmu.Lock()
	pb := e.pendLocked(k, int(h.lanes), h.incarnation)
	pb.primary = true
	e.pmu.Unlock()
	wait := e.cfg.HandshakeTimeout
	if d, ok := ctx.Deadline(); ok {
		wait = time.Until(d)
	}
	tm := time.NewTimer(wait - wait/4)
	defer tm.Stop()
	select {
	case <-pb.ready:
	case <-tm.C:
	case <-ctx.Done():
	}
	e.pmu.Lock()
	if e.pend[k] == pb {
		delete(e.pend, k)
	}
	complete := len(pb.socks) == int(h.lanes) && pb.inc == h.incarnation && pb.got == len(pb.socks)-1
	socks = pb.socks
	e.pmu.Unlock()
	finish = func() { close(pb.done) }
	if !complete {
		closeSocks(socks)
		return nil, finish
	}
	socks[0] = s
	return socks, finish
}
