package peers

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/ringtrain/ringtrain/transport"
)

// ErrDuplicate: the peer refused our dial because its own dial wins. Its
// text travels in the transports' refusals, so it must not change.
var ErrDuplicate = errors.New("peer refused the connection: the pair already has one")

// Conn is what a Table needs of a transport's connection to one peer.
type Conn interface {
	comparable
	transport.Conn
	// Dead reports whether the connection has ended.
	Dead() bool
	// Origin reports whether this endpoint dialed the connection and the
	// incarnation the peer announced in its hello.
	Origin() (dialedByMe bool, peerIncarnation uint64)
	// Start launches the connection's goroutines. The table calls it once,
	// when it installs the connection, with its lock held.
	Start()
	// Replaced ends the connection because a newer one to the same peer
	// was installed. It runs with the table's lock held.
	Replaced()
	// Discard ends a connection a dial made that the table did not
	// install (the endpoint closed, or FailPeer ran meanwhile).
	Discard()
}

// Config configures a Table.
type Config[C Conn] struct {
	// Self is this node's ID.
	Self string
	// Peers are initial peer addresses (node ID → address).
	Peers map[string]string
	// Resolve, if set, is asked for the address of a peer AddPeer has not
	// named.
	Resolve func(ctx context.Context, id string) (string, error)
	// DialOnce makes one connection attempt to peer at addr; it returns
	// ErrDuplicate when the peer refused it because its own dial wins.
	DialOnce func(ctx context.Context, peer, addr string) (C, error)
	// Permanent reports the dial errors that retrying cannot fix.
	Permanent func(error) bool
	// HandshakeTimeout is how long Conn waits for the peer's connection
	// after the peer refused ours as a duplicate, before dialing again.
	HandshakeTimeout time.Duration
	// Done ends when the endpoint closes: dial attempts that fail then
	// end with transport.ErrClosed instead of retrying.
	Done context.Context
}

// Table is an endpoint's connections, one per peer. It is safe for
// concurrent use.
type Table[C Conn] struct {
	cfg Config[C]

	mu     sync.Mutex
	closed bool
	addrs  map[string]string
	peers  map[string]*entry[C]
	watch  watchers        // WatchConns callbacks (watch.go)
	keep   map[string]bool // peers KeepOpen exempts from idle closing (idle.go)
}

// entry is the connection state toward one peer; guarded by Table.mu.
type entry[C Conn] struct {
	conn    C // the zero C when there is none
	dialing bool
	changed chan struct{} // closed (and replaced) whenever conn or dialing changes
	// failed counts FailPeer calls; a Conn call that saw it change while it
	// waited fails instead of dialing again.
	failed     uint64
	failErr    error                   // the last FailPeer's error
	dialCancel context.CancelCauseFunc // ends the dial in progress, if any
}

// New makes an empty table.
func New[C Conn](cfg Config[C]) *Table[C] {
	t := &Table[C]{cfg: cfg, addrs: make(map[string]string), peers: make(map[string]*entry[C])}
	for id, addr := range cfg.Peers {
		t.addrs[id] = addr
	}
	return t
}

func opErr(peer string, err error) error {
	return &transport.OpError{Op: "dial", Peer: peer, Err: err}
}

func (en *entry[C]) notify() {
	close(en.changed)
	en.changed = make(chan struct{})
}

// live is the entry's connection if it has one that has not ended.
func (en *entry[C]) live() (C, bool) {
	var zero C
	if c := en.conn; c != zero && !c.Dead() {
		return c, true
	}
	return zero, false
}

func (t *Table[C]) entryLocked(id string) *entry[C] {
	en := t.peers[id]
	if en == nil {
		en = &entry[C]{changed: make(chan struct{})}
		t.peers[id] = en
	}
	return en
}

// AddPeer records (or updates) a peer's address.
func (t *Table[C]) AddPeer(id, addr string) {
	t.mu.Lock()
	t.addrs[id] = addr
	t.mu.Unlock()
}

// Conns returns the installed connections, ended ones included.
func (t *Table[C]) Conns() []C {
	t.mu.Lock()
	defer t.mu.Unlock()
	var zero C
	var conns []C
	for _, en := range t.peers {
		if en.conn != zero {
			conns = append(conns, en.conn)
		}
	}
	return conns
}

// Get returns the installed connection to id, if any.
func (t *Table[C]) Get(id string) (C, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	var zero C
	if en := t.peers[id]; en != nil && en.conn != zero {
		return en.conn, true
	}
	return zero, false
}

// Close marks the table closed (Conn and Admit refuse from now on), ends
// the dials in progress with transport.ErrClosed and returns the installed
// connections for the endpoint to end. It returns false if the table was
// closed already.
func (t *Table[C]) Close() ([]C, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return nil, false
	}
	t.closed = true
	var zero C
	var conns []C
	for _, en := range t.peers {
		if en.conn != zero {
			conns = append(conns, en.conn)
		}
		if en.dialCancel != nil {
			en.dialCancel(transport.ErrClosed)
		}
		en.notify()
	}
	return conns, true
}

// FailPeer records the verdict err (which wraps transport.ErrPeerLost) on
// peer id: its connection is removed and returned for the endpoint to
// end, the dial in progress ends with err, and Conn calls waiting through
// it fail with err. It returns false if the table has no entry for id or
// is closed.
func (t *Table[C]) FailPeer(id string, err error) (C, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	var zero C
	en := t.peers[id]
	if en == nil || t.closed {
		return zero, false
	}
	c := en.conn
	en.conn = zero
	en.failed++
	en.failErr = err
	if en.dialCancel != nil {
		en.dialCancel(err)
	}
	en.notify()
	return c, true
}

// Forget removes c from the table once it has ended (a newer connection
// may have replaced it meanwhile; that one stays).
func (t *Table[C]) Forget(c C) {
	t.mu.Lock()
	if en := t.peers[c.Peer()]; en != nil && en.conn == c {
		var zero C
		en.conn = zero
		en.notify()
	}
	t.mu.Unlock()
}

// detach removes c from the table unless it was replaced meanwhile or the
// table is closed, and reports whether it did.
func (t *Table[C]) detach(c C) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	en := t.peers[c.Peer()]
	if en == nil || en.conn != c || t.closed {
		return false
	}
	var zero C
	en.conn = zero
	en.notify()
	return true
}

// installLocked makes c the connection to its peer, replacing an old one.
func (t *Table[C]) installLocked(en *entry[C], c C) {
	var zero C
	if old := en.conn; old != zero && old != c {
		old.Replaced()
	}
	en.conn = c
	en.notify()
	c.Start()
	t.watch.announce(c)
}

// Conn returns the connection to peer, dialing it if there is none: it
// is transport.Endpoint's Conn. Errors are *transport.OpError (Op
// "dial"); the connection is nil with them.
func (t *Table[C]) Conn(ctx context.Context, peer string) (transport.Conn, error) {
	c, err := t.conn(ctx, peer)
	if err != nil {
		return nil, err
	}
	return c, nil
}

func (t *Table[C]) conn(ctx context.Context, peer string) (C, error) {
	var zero C
	if peer == t.cfg.Self {
		return zero, opErr(peer, fmt.Errorf("%w: a node has no connection to itself", transport.ErrUnknownPeer))
	}
	var gen uint64 // en.failed when this call started waiting
	waited := false
	for {
		t.mu.Lock()
		if t.closed {
			t.mu.Unlock()
			return zero, opErr(peer, transport.ErrClosed)
		}
		en := t.entryLocked(peer)
		if c, ok := en.live(); ok {
			t.mu.Unlock()
			return c, nil
		}
		if waited && en.failed != gen {
			err := en.failErr
			t.mu.Unlock()
			return zero, opErr(peer, err)
		}
		gen, waited = en.failed, true
		ch := en.changed
		if en.dialing {
			t.mu.Unlock()
			select {
			case <-ch:
				continue
			case <-ctx.Done():
				return zero, opErr(peer, fmt.Errorf("%w: %w (waiting for another dial)", transport.ErrUnreachable, ctx.Err()))
			}
		}
		en.dialing = true
		dctx, dcancel := context.WithCancelCause(ctx)
		en.dialCancel = dcancel
		t.mu.Unlock()

		c, err := t.dial(dctx, peer)

		t.mu.Lock()
		en.dialing = false
		en.dialCancel = nil
		dcancel(nil)
		if err == nil && t.closed {
			err = transport.ErrClosed
		}
		if err == nil && en.failed != gen {
			err = en.failErr // FailPeer ran while the dial completed
		}
		if err == nil {
			t.installLocked(en, c)
		} else {
			en.notify()
		}
		ch = en.changed
		_, live := en.live()
		t.mu.Unlock()
		if err == nil {
			return c, nil
		}
		if c != zero {
			c.Discard()
		}
		if !errors.Is(err, ErrDuplicate) {
			return zero, opErr(peer, err)
		}
		if live {
			continue
		}
		// The peer's own dial wins; wait for it to arrive, and dial again
		// if it does not come (the peer may have given up).
		tm := time.NewTimer(t.cfg.HandshakeTimeout)
		select {
		case <-ch:
		case <-tm.C:
		case <-ctx.Done():
			tm.Stop()
			return zero, opErr(peer, fmt.Errorf("%w: %w (waiting for the peer's connection)", transport.ErrUnreachable, ctx.Err()))
		}
		tm.Stop()
	}
}

func (t *Table[C]) resolve(ctx context.Context, peer string) (string, error) {
	t.mu.Lock()
	addr, ok := t.addrs[peer]
	t.mu.Unlock()
	if ok {
		return addr, nil
	}
	if t.cfg.Resolve == nil {
		return "", fmt.Errorf("%w: no address for node %s", transport.ErrUnknownPeer, peer)
	}
	return t.cfg.Resolve(ctx, peer)
}

// dial connects to peer, retrying with backoff until ctx ends or an error
// that retrying cannot fix.
func (t *Table[C]) dial(ctx context.Context, peer string) (C, error) {
	var zero C
	backoff := 20 * time.Millisecond
	for {
		addr, err := t.resolve(ctx, peer)
		if err == nil {
			var c C
			c, err = t.cfg.DialOnce(ctx, peer, addr)
			if err == nil {
				return c, nil
			}
		}
		if t.cfg.Permanent(err) {
			return zero, err
		}
		if t.cfg.Done.Err() != nil {
			return zero, transport.ErrClosed
		}
		if ctx.Err() == nil {
			tm := time.NewTimer(backoff)
			select {
			case <-ctx.Done():
			case <-tm.C:
			}
			tm.Stop()
		}
		if ctx.Err() != nil {
			// FailPeer's verdict is a loss; running out of time is not.
			if cause := context.Cause(ctx); errors.Is(cause, transport.ErrPeerLost) || errors.Is(cause, transport.ErrClosed) {
				return zero, cause
			}
			return zero, fmt.Errorf("%w: %w (last attempt: %v)", transport.ErrUnreachable, ctx.Err(), err)
		}
		backoff = min(2*backoff, time.Second)
	}
}
