// Package mem is an in-memory transport: N peers in one process exchange
// messages through a Network that can drop, delay and rate-limit links and
// crash peers. It backs the multi-peer tests of every layer above transport
// and the rate-limited all-reduce bench, so it implements the full
// transport.Conn contract (per-tag order, flow control, aborts, deadlines).
//
// Invariants:
//   - Messages on one link direction with one Tag are delivered in send order,
//     each copied once into a pooled buffer (the sender may reuse its slice).
//   - At most Window messages per (direction, tag) wait undelivered; Send
//     blocks beyond that (flow control), so memory stays O(chunk · Window).
//   - A crashed or closed endpoint fails every pending and future call that
//     involves it, on both sides, with transport.ErrPeerLost (remote side) or
//     transport.ErrClosed (local side).
//   - FailPeer fails one connection (both ends) with transport.ErrPeerLost;
//     a later Conn makes a new one over the same links.
//   - Abort reasons are truncated to transport.MaxReasonLen.
//   - A dropped link loses messages silently, as a partitioned network does;
//     the receiver's deadline ends its wait.
package mem

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/ringtrain/ringtrain/transport"
)

// Window is the number of undelivered messages per link direction and tag
// after which Send blocks.
const Window = 8

// maxAborted bounds the remembered aborted tags per link direction.
const maxAborted = 4096

// Link describes the fault and speed model of the link between two peers.
// The zero value is a perfect, infinitely fast link.
type Link struct {
	Drop  bool          // messages are lost silently (partition)
	Delay time.Duration // one-way latency added to every message
	Rate  float64       // bytes per second per direction; 0 = unlimited
}

// Network is an in-memory network of endpoints. The zero value is not
// usable; use NewNetwork.
type Network struct {
	mu    sync.Mutex
	nodes map[string]*Endpoint
	links map[[2]string]*direction // directed: {from, to}
	cfg   map[[2]string]Link       // undirected key (sorted)
	pool  bufPool
}

// NewNetwork returns an empty network.
func NewNetwork() *Network {
	return &Network{
		nodes: make(map[string]*Endpoint),
		links: make(map[[2]string]*direction),
		cfg:   make(map[[2]string]Link),
	}
}

// Endpoint registers a new peer with the given ID.
func (n *Network) Endpoint(id string) (*Endpoint, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if _, ok := n.nodes[id]; ok {
		return nil, fmt.Errorf("mem: endpoint %q already exists", id)
	}
	e := &Endpoint{net: n, id: id, conns: make(map[string]*conn), watchers: make(map[int]func(transport.Conn)), done: make(chan struct{})}
	n.nodes[id] = e
	return e, nil
}

// SetLink sets the link model between a and b, in both directions. It applies
// to messages sent after the call.
func (n *Network) SetLink(a, b string, l Link) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.cfg[pairKey(a, b)] = l
}

// Crash closes the endpoint id abruptly: its peers' pending and future calls
// toward it fail with transport.ErrPeerLost.
func (n *Network) Crash(id string) {
	n.mu.Lock()
	e := n.nodes[id]
	n.mu.Unlock()
	if e != nil {
		e.Close()
	}
}

func pairKey(a, b string) [2]string {
	if a > b {
		a, b = b, a
	}
	return [2]string{a, b}
}

func (n *Network) link(a, b string) Link {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.cfg[pairKey(a, b)]
}

// dir returns the directed state from→to, creating it on first use.
func (n *Network) dir(from, to string) *direction {
	n.mu.Lock()
	defer n.mu.Unlock()
	k := [2]string{from, to}
	d := n.links[k]
	if d == nil {
		d = &direction{from: from, to: to, boxes: make(map[transport.Tag]*mailbox), aborted: make(map[transport.Tag]string)}
		n.links[k] = d
	}
	return d
}

func (n *Network) alive(id string) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	e := n.nodes[id]
	return e != nil && !e.isClosed()
}

// Endpoint is one peer of a Network. It implements transport.Endpoint.
type Endpoint struct {
	net   *Network
	id    string
	mu    sync.Mutex
	conns map[string]*conn
	// watchers are the WatchConns callbacks (watch.go); guarded by mu.
	watchers  map[int]func(transport.Conn)
	nextWatch int
	done      chan struct{} // closed by Close
	once      sync.Once
}

var (
	_ transport.Endpoint    = (*Endpoint)(nil)
	_ transport.PeerFailer  = (*Endpoint)(nil)
	_ transport.ConnWatcher = (*Endpoint)(nil)
)

// ID returns the endpoint's node ID.
func (e *Endpoint) ID() string { return e.id }

// Conn returns the connection to peer. The peer must be registered on the
// same Network.
func (e *Endpoint) Conn(ctx context.Context, peer string) (transport.Conn, error) {
	if e.isClosed() {
		return nil, &transport.OpError{Op: "dial", Peer: peer, Err: transport.ErrClosed}
	}
	if err := ctx.Err(); err != nil {
		return nil, &transport.OpError{Op: "dial", Peer: peer, Err: err}
	}
	e.net.mu.Lock()
	p := e.net.nodes[peer]
	e.net.mu.Unlock()
	if p == nil {
		return nil, &transport.OpError{Op: "dial", Peer: peer, Err: transport.ErrUnknownPeer}
	}
	e.mu.Lock()
	c := e.conns[peer]
	made := c == nil
	if made {
		c = newConn(e, p, e.net.dir(e.id, peer), e.net.dir(peer, e.id))
		e.conns[peer] = c
		e.announceLocked(c)
	}
	e.mu.Unlock()
	if made {
		p.accept(e) // the peer's end exists too, as a QUIC connection's does
	}
	return c, nil
}

// FailPeer declares peer id dead, as a failure detector would: every call
// on the connection to it, pending or later, fails with an error wrapping
// transport.ErrPeerLost and cause; the peer's side of the connection fails
// too (as a closed QUIC connection does), and messages in flight either way
// are lost. The next Conn to (or from) the peer makes a new connection.
func (e *Endpoint) FailPeer(id string, cause error) {
	e.mu.Lock()
	c := e.conns[id]
	delete(e.conns, id)
	e.mu.Unlock()
	if c == nil {
		return
	}
	c.fail(fmt.Errorf("%w: declared dead by %s: %v", transport.ErrPeerLost, e.id, cause))
	p := c.remote
	p.mu.Lock()
	rc := p.conns[e.id]
	delete(p.conns, e.id)
	p.mu.Unlock()
	if rc != nil {
		rc.fail(fmt.Errorf("%w: peer %s closed the connection (it declared this node dead)", transport.ErrPeerLost, e.id))
	}
	// A call that passed its state check holds d.mu until it has queued its
	// message, so once the purge below has run no message of the failed
	// connection can reach the next one.
	for _, d := range []*direction{c.out, c.in} {
		d.mu.Lock()
		for tag, b := range d.boxes {
			for b.n > 0 {
				e.net.pool.put(b.pop().buf)
			}
			d.release(tag, b)
		}
		d.signal()
		d.mu.Unlock()
	}
}

// Close closes the endpoint. Peers see transport.ErrPeerLost.
func (e *Endpoint) Close() error {
	e.once.Do(func() {
		close(e.done)
		// Wake every waiter on a direction that touches this endpoint.
		e.net.mu.Lock()
		var ds []*direction
		for k, d := range e.net.links {
			if k[0] == e.id || k[1] == e.id {
				ds = append(ds, d)
			}
		}
		e.net.mu.Unlock()
		for _, d := range ds {
			d.broadcast()
		}
	})
	return nil
}

func (e *Endpoint) isClosed() bool {
	select {
	case <-e.done:
		return true
	default:
		return false
	}
}

// Endpoints registers one endpoint per ID, a convenience for tests and
// benches that build a whole cluster at once.
func (n *Network) Endpoints(ids ...string) ([]*Endpoint, error) {
	eps := make([]*Endpoint, 0, len(ids))
	for _, id := range ids {
		e, err := n.Endpoint(id)
		if err != nil {
			for _, p := range eps {
				p.Close()
			}
			return nil, err
		}
		eps = append(eps, e)
	}
	return eps, nil
}
