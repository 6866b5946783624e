package tcp

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ringtrain/ringtrain/internal/secret"
	"github.com/ringtrain/ringtrain/transport"
)

// Endpoint is one node's TCP endpoint. It implements transport.Endpoint,
// transport.PeerFailer and transport.ConnWatcher and is safe for
// concurrent use.
type Endpoint struct {
	cfg         Config
	node        *secret.Node
	log         *slog.Logger
	ln          *net.TCPListener
	incarnation uint64
	epoch       atomic.Uint64 // data messages below it are refused

	ctx    context.Context // done when the endpoint closes
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu     sync.Mutex
	closed bool
	addrs  map[string]string
	peers  map[string]*peerState
	watch  watchers // WatchConns callbacks (watch.go)
}

// peerState is the connection state toward one peer; guarded by Endpoint.mu.
type peerState struct {
	conn    *conn
	dialing bool
	changed chan struct{} // closed (and replaced) whenever conn or dialing changes
	// failed counts FailPeer calls; a Conn call that saw it change while it
	// waited fails instead of dialing again.
	failed     uint64
	failErr    error
	dialCancel context.CancelCauseFunc
}

var (
	_ transport.Endpoint    = (*Endpoint)(nil)
	_ transport.PeerFailer  = (*Endpoint)(nil)
	_ transport.ConnWatcher = (*Endpoint)(nil)
)

// Listen binds cfg.ListenAddr and starts accepting connections.
func Listen(cfg Config) (*Endpoint, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	node, err := cfg.cluster.Node(cfg.ID)
	if err != nil {
		return nil, err
	}
	var inc [8]byte
	if _, err := rand.Read(inc[:]); err != nil {
		return nil, fmt.Errorf("tcp: node %s: incarnation: %w", cfg.ID, err)
	}
	ta, err := net.ResolveTCPAddr("tcp", cfg.ListenAddr)
	if err != nil {
		return nil, fmt.Errorf("tcp: node %s: listen address %q: %w", cfg.ID, cfg.ListenAddr, err)
	}
	ln, err := net.ListenTCP("tcp", ta)
	if err != nil {
		return nil, fmt.Errorf("tcp: node %s: %w", cfg.ID, err)
	}
	e := &Endpoint{
		cfg:         cfg,
		node:        node,
		log:         cfg.Logger.With("node", cfg.ID),
		ln:          ln,
		incarnation: binary.LittleEndian.Uint64(inc[:]),
		addrs:       make(map[string]string),
		peers:       make(map[string]*peerState),
	}
	for id, addr := range cfg.Peers {
		e.addrs[id] = addr
	}
	e.ctx, e.cancel = context.WithCancel(context.Background())
	e.wg.Go(e.acceptLoop)
	return e, nil
}

// ID is this node's ID.
func (e *Endpoint) ID() string { return e.cfg.ID }

// Addr is the bound TCP address, to give to peers.
func (e *Endpoint) Addr() net.Addr { return e.ln.Addr() }

// AddPeer records (or updates) a peer's address.
func (e *Endpoint) AddPeer(id, addr string) {
	e.mu.Lock()
	e.addrs[id] = addr
	e.mu.Unlock()
}

// SetEpoch sets the current membership epoch: data messages of lower epochs
// are refused from now on, and unread ones are dropped (control messages,
// Op ≥ transport.ControlOpBase, are exempt). It never lowers it.
func (e *Endpoint) SetEpoch(epoch uint64) {
	for {
		old := e.epoch.Load()
		if epoch <= old || e.epoch.CompareAndSwap(old, epoch) {
			break
		}
	}
	for _, c := range e.liveConns() {
		c.dropBelow(e.epoch.Load())
	}
}

// Epoch is the epoch set with SetEpoch.
func (e *Endpoint) Epoch() uint64 { return e.epoch.Load() }

func (e *Endpoint) liveConns() []*conn {
	e.mu.Lock()
	defer e.mu.Unlock()
	var conns []*conn
	for _, ps := range e.peers {
		if ps.conn != nil {
			conns = append(conns, ps.conn)
		}
	}
	return conns
}

// Close ends every connection gracefully within Config.Linger (the peer
// reads everything Send returned for, then sees ErrPeerLost), stops
// accepting and waits for every goroutine of the endpoint.
func (e *Endpoint) Close() error {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return nil
	}
	e.closed = true
	var conns []*conn
	for _, ps := range e.peers {
		if ps.conn != nil {
			conns = append(conns, ps.conn)
		}
		if ps.dialCancel != nil {
			ps.dialCancel(transport.ErrClosed)
		}
		notify(ps)
	}
	e.mu.Unlock()
	err := e.ln.Close()
	var wg sync.WaitGroup
	for _, c := range conns {
		wg.Go(func() { c.goodbye(e.cfg.Linger) })
	}
	wg.Wait()
	e.cancel()
	e.wg.Wait()
	return err
}

// FailPeer declares peer id dead (the failure detector said so): its
// connection is closed at once, so every pending call on it, and a dial to
// it in progress, fails with an error wrapping transport.ErrPeerLost and
// cause. The peer sees its connection closed. A later Conn (or the peer's
// own dial) makes a new connection.
func (e *Endpoint) FailPeer(id string, cause error) {
	err := fmt.Errorf("%w: declared dead: %v", transport.ErrPeerLost, cause)
	e.mu.Lock()
	ps := e.peers[id]
	if ps == nil || e.closed {
		e.mu.Unlock()
		return
	}
	c := ps.conn
	ps.conn = nil
	ps.failed++
	ps.failErr = err
	if ps.dialCancel != nil {
		ps.dialCancel(err)
	}
	notify(ps)
	e.mu.Unlock()
	if c != nil {
		c.kill(err)
	}
}

func notify(ps *peerState) {
	close(ps.changed)
	ps.changed = make(chan struct{})
}

func (e *Endpoint) peerLocked(id string) *peerState {
	ps := e.peers[id]
	if ps == nil {
		ps = &peerState{changed: make(chan struct{})}
		e.peers[id] = ps
	}
	return ps
}

// Conn returns the connection to peer, dialing it if there is none.
func (e *Endpoint) Conn(ctx context.Context, peer string) (transport.Conn, error) {
	if peer == e.cfg.ID {
		return nil, opErr("dial", peer, transport.Tag{}, fmt.Errorf("%w: a node has no connection to itself", transport.ErrUnknownPeer))
	}
	var gen uint64 // ps.failed when this call started waiting
	waited := false
	for {
		e.mu.Lock()
		if e.closed {
			e.mu.Unlock()
			return nil, opErr("dial", peer, transport.Tag{}, transport.ErrClosed)
		}
		ps := e.peerLocked(peer)
		if c := ps.conn; c != nil && !c.isDead() {
			e.mu.Unlock()
			return c, nil
		}
		if waited && ps.failed != gen {
			err := ps.failErr
			e.mu.Unlock()
			return nil, opErr("dial", peer, transport.Tag{}, err)
		}
		gen, waited = ps.failed, true
		ch := ps.changed
		if ps.dialing {
			e.mu.Unlock()
			select {
			case <-ch:
				continue
			case <-ctx.Done():
				return nil, opErr("dial", peer, transport.Tag{}, fmt.Errorf("%w: %w (waiting for another dial)", transport.ErrUnreachable, ctx.Err()))
			}
		}
		ps.dialing = true
		dctx, dcancel := context.WithCancelCause(ctx)
		ps.dialCancel = dcancel
		e.mu.Unlock()

		c, err := e.dial(dctx, peer)

		e.mu.Lock()
		ps.dialing = false
		ps.dialCancel = nil
		dcancel(nil)
		if err == nil && e.closed {
			err = transport.ErrClosed
		}
		if err == nil && ps.failed != gen {
			err = ps.failErr // FailPeer ran while the dial completed
		}
		if err == nil {
			e.installLocked(ps, c)
		} else {
			notify(ps)
		}
		ch = ps.changed
		live := ps.conn != nil && !ps.conn.isDead()
		e.mu.Unlock()
		if err == nil {
			return c, nil
		}
		if c != nil {
			c.kill(transport.ErrClosed)
		}
		if !errors.Is(err, errDuplicate) {
			return nil, opErr("dial", peer, transport.Tag{}, err)
		}
		if live {
			continue
		}
		// The peer's own dial wins; wait for it to arrive, and dial again
		// if it does not come (the peer may have given up).
		t := time.NewTimer(e.cfg.HandshakeTimeout)
		select {
		case <-ch:
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return nil, opErr("dial", peer, transport.Tag{}, fmt.Errorf("%w: %w (waiting for the peer's connection)", transport.ErrUnreachable, ctx.Err()))
		}
		t.Stop()
	}
}

// installLocked makes c the connection to its peer, replacing an old one.
func (e *Endpoint) installLocked(ps *peerState, c *conn) {
	if old := ps.conn; old != nil && old != c {
		old.kill(fmt.Errorf("%w: connection replaced by a newer one", transport.ErrPeerLost))
	}
	ps.conn = c
	notify(ps)
	c.start()
	e.watch.announce(c)
}

// forget removes c from the peer table once it is dead.
func (e *Endpoint) forget(c *conn) {
	e.mu.Lock()
	if ps := e.peers[c.peer]; ps != nil && ps.conn == c {
		ps.conn = nil
		notify(ps)
	}
	e.mu.Unlock()
}

func (e *Endpoint) resolve(ctx context.Context, peer string) (string, error) {
	e.mu.Lock()
	addr, ok := e.addrs[peer]
	e.mu.Unlock()
	if ok {
		return addr, nil
	}
	if e.cfg.Resolve == nil {
		return "", fmt.Errorf("%w: no address for node %s", transport.ErrUnknownPeer, peer)
	}
	return e.cfg.Resolve(ctx, peer)
}

// dial connects to peer, retrying with backoff until ctx ends or an error
// that retrying cannot fix.
func (e *Endpoint) dial(ctx context.Context, peer string) (*conn, error) {
	backoff := 20 * time.Millisecond
	for {
		addr, err := e.resolve(ctx, peer)
		var c *conn
		if err == nil {
			c, err = e.dialOnce(ctx, peer, addr)
			if err == nil {
				return c, nil
			}
		}
		if permanent(err) {
			return nil, err
		}
		if e.ctx.Err() != nil {
			return nil, transport.ErrClosed
		}
		if ctx.Err() == nil {
			t := time.NewTimer(backoff)
			select {
			case <-ctx.Done():
			case <-t.C:
			}
			t.Stop()
		}
		if ctx.Err() != nil {
			// FailPeer's verdict is a loss; running out of time is not.
			if cause := context.Cause(ctx); errors.Is(cause, transport.ErrPeerLost) || errors.Is(cause, transport.ErrClosed) {
				return nil, cause
			}
			return nil, fmt.Errorf("%w: %w (last attempt: %v)", transport.ErrUnreachable, ctx.Err(), err)
		}
		backoff = min(2*backoff, time.Second)
	}
}
