package quic

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	quicgo "github.com/quic-go/quic-go"

	"github.com/ringtrain/ringtrain/internal/secret"
	"github.com/ringtrain/ringtrain/internal/wire"
	"github.com/ringtrain/ringtrain/transport"
)

// Endpoint is one node's QUIC endpoint. It implements transport.Endpoint and
// is safe for concurrent use.
type Endpoint struct {
	cfg         Config
	node        *secret.Node
	log         *slog.Logger
	qconf       *quicgo.Config
	udp         *net.UDPConn
	tr          *quicgo.Transport
	ln          *quicgo.Listener
	incarnation uint64
	epoch       atomic.Uint64 // messages below it are refused

	ctx    context.Context // done when the endpoint closes
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu     sync.Mutex
	closed bool
	addrs  map[string]string
	peers  map[string]*peerState
	watch  watchers        // WatchConns callbacks (watch.go)
	keep   map[string]bool // peers KeepOpen exempts from IdleClose (idle.go)
}

// peerState is the connection state toward one peer; guarded by Endpoint.mu.
type peerState struct {
	conn    *conn
	dialing bool
	changed chan struct{} // closed (and replaced) whenever conn or dialing changes
	// failed counts FailPeer calls; a Conn call that saw it change while it
	// waited fails instead of dialing again.
	failed     uint64
	failErr    error                   // the last FailPeer's error
	dialCancel context.CancelCauseFunc // ends the dial in progress, if any
}

var (
	_ transport.Endpoint   = (*Endpoint)(nil)
	_ transport.PeerFailer = (*Endpoint)(nil)
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
	ua, err := net.ResolveUDPAddr("udp", cfg.ListenAddr)
	if err != nil {
		return nil, fmt.Errorf("quic: node %s: listen address %q: %w", cfg.ID, cfg.ListenAddr, err)
	}
	udp, err := net.ListenUDP("udp", ua)
	if err != nil {
		return nil, fmt.Errorf("quic: node %s: %w", cfg.ID, err)
	}
	var inc [8]byte
	if _, err := rand.Read(inc[:]); err != nil {
		udp.Close()
		return nil, fmt.Errorf("quic: node %s: incarnation: %w", cfg.ID, err)
	}
	e := &Endpoint{
		cfg:         cfg,
		node:        node,
		log:         cfg.Logger.With("node", cfg.ID),
		qconf:       cfg.quicConfig(),
		udp:         udp,
		tr:          &quicgo.Transport{Conn: udp},
		incarnation: binary.LittleEndian.Uint64(inc[:]),
		addrs:       make(map[string]string),
		peers:       make(map[string]*peerState),
	}
	for id, addr := range cfg.Peers {
		e.addrs[id] = addr
	}
	e.ctx, e.cancel = context.WithCancel(context.Background())
	srv := node.ServerConfig()
	verify := srv.VerifyPeerCertificate
	srv.VerifyPeerCertificate = func(raw [][]byte, chains [][]*x509.Certificate) error {
		err := verify(raw, chains)
		if err != nil {
			e.log.Warn("refused an incoming connection", "err", err)
		}
		return err
	}
	e.ln, err = e.tr.Listen(srv, e.qconf)
	if err != nil {
		e.tr.Close()
		udp.Close()
		return nil, fmt.Errorf("quic: node %s: listen: %w", cfg.ID, err)
	}
	checkUDPBuffers(udp, e.log)
	e.wg.Go(e.acceptLoop)
	if cfg.IdleClose > 0 {
		e.wg.Go(e.idleLoop)
	}
	return e, nil
}

// ID is this node's ID.
func (e *Endpoint) ID() string { return e.cfg.ID }

// Addr is the bound UDP address (host:port), to give to peers.
func (e *Endpoint) Addr() string { return e.udp.LocalAddr().String() }

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
	e.mu.Lock()
	var conns []*conn
	for _, ps := range e.peers {
		if ps.conn != nil {
			conns = append(conns, ps.conn)
		}
	}
	e.mu.Unlock()
	for _, c := range conns {
		c.dropBelow(e.epoch.Load())
	}
}

// Epoch is the epoch set with SetEpoch.
func (e *Endpoint) Epoch() uint64 { return e.epoch.Load() }

// Close closes every connection (peers see ErrPeerLost) and the socket.
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
		notify(ps)
	}
	e.mu.Unlock()
	var wg sync.WaitGroup
	for _, c := range conns {
		wg.Go(func() {
			c.goodbye(e.cfg.Linger)
			c.close(codeClosed, "endpoint closed", transport.ErrClosed)
		})
	}
	wg.Wait()
	e.cancel()
	e.ln.Close()
	err := e.tr.Close()
	e.udp.Close()
	e.wg.Wait()
	return err
}

// FailPeer declares peer id dead (the failure detector said so): its
// connection is closed with codeFailed, so every pending call on it, and a
// dial to it in progress, fails at once with an error wrapping
// transport.ErrPeerLost and cause. The peer sees its connection closed. A
// later Conn (or the peer's own dial) makes a new connection.
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
		c.close(codeFailed, "declared dead: "+transport.TruncateReason(fmt.Sprint(cause)), err)
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
			c.close(codeClosed, "endpoint closed", transport.ErrClosed)
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
		go old.close(codeReplaced, "replaced by a newer connection", fmt.Errorf("%w: connection replaced by a newer one", transport.ErrPeerLost))
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
			if cause := context.Cause(ctx); errors.Is(cause, transport.ErrPeerLost) {
				return nil, cause
			}
			return nil, fmt.Errorf("%w: %w (last attempt: %v)", transport.ErrUnreachable, ctx.Err(), err)
		}
		backoff = min(2*backoff, time.Second)
	}
}

func (e *Endpoint) dialOnce(ctx context.Context, peer, addr string) (*conn, error) {
	ua, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return nil, fmt.Errorf("%w: address %q: %v", transport.ErrUnknownPeer, addr, err)
	}
	tc := e.node.ClientConfig(peer)
	// The handshake runs on quic-go's goroutine; keep our verdict so a
	// wrong secret is reported as such, not as a generic TLS alert.
	var verifyErr atomic.Pointer[error]
	verify := tc.VerifyPeerCertificate
	tc.VerifyPeerCertificate = func(raw [][]byte, chains [][]*x509.Certificate) error {
		err := verify(raw, chains)
		if err != nil {
			verifyErr.Store(&err)
		}
		return err
	}
	hctx, cancel := context.WithTimeout(ctx, e.cfg.HandshakeTimeout)
	defer cancel()
	qc, err := e.tr.Dial(hctx, ua, tc, e.qconf)
	if err != nil {
		var verr error
		if p := verifyErr.Load(); p != nil {
			verr = *p
		}
		return nil, handshakeError(err, verr)
	}
	fail := func(err error) (*conn, error) {
		qc.CloseWithError(codeProtocol, err.Error())
		return nil, err
	}
	ctrl, err := qc.OpenStream()
	if err != nil {
		return fail(err)
	}
	deadline, _ := hctx.Deadline()
	ctrl.SetDeadline(deadline)
	hello := &wire.Control{Body: &wire.Control_Hello{Hello: &wire.Hello{
		NodeId: e.cfg.ID, ToNodeId: peer, ProtocolVersion: wire.ProtocolVersion,
		Epoch: e.epoch.Load(), Incarnation: e.incarnation,
	}}}
	frame, err := wire.AppendFrame(nil, hello, wire.MaxControlSize)
	if err != nil {
		return fail(err)
	}
	if _, err := ctrl.Write(frame); err != nil {
		return fail(err)
	}
	body, err := wire.ReadFrameGrow(ctrl, new([]byte), wire.MaxControlSize)
	if err != nil {
		var ae *quicgo.ApplicationError
		if errors.As(err, &ae) && ae.ErrorCode == codeDuplicate {
			return nil, errDuplicate
		}
		return fail(fmt.Errorf("reading the peer's hello ack: %w", err))
	}
	m, err := wire.DecodeControl(body)
	if err != nil {
		return fail(fmt.Errorf("%w: %v", transport.ErrProtocol, err))
	}
	ack := m.GetHelloAck()
	switch {
	case ack == nil:
		return fail(fmt.Errorf("%w: expected a hello ack, got %T", transport.ErrProtocol, m.Body))
	case !ack.Accepted && ack.Reason == errDuplicate.Error():
		qc.CloseWithError(codeDuplicate, "duplicate")
		return nil, errDuplicate
	case !ack.Accepted:
		qc.CloseWithError(codeProtocol, "refused")
		return nil, fmt.Errorf("%w: peer refused the connection: %s", transport.ErrProtocol, ack.Reason)
	}
	ctrl.SetDeadline(time.Time{})
	return newConn(e, peer, qc, ctrl, true, ack.Incarnation), nil
}

func (e *Endpoint) acceptLoop() {
	for {
		qc, err := e.ln.Accept(e.ctx)
		if err != nil {
			return
		}
		e.wg.Go(func() { e.handleIncoming(qc) })
	}
}

// handleIncoming reads the dialer's Hello and decides whether the new
// connection becomes the pair's connection (see the package comment).
func (e *Endpoint) handleIncoming(qc *quicgo.Conn) {
	peer, err := e.cfg.cluster.PeerID(qc.ConnectionState().TLS)
	if err != nil { // cannot happen after our VerifyPeerCertificate; be safe
		qc.CloseWithError(codeProtocol, "certificate")
		return
	}
	refuse := func(code quicgo.ApplicationErrorCode, why string) {
		e.log.Warn("refused a connection", "peer", peer, "remote", qc.RemoteAddr().String(), "reason", why)
		qc.CloseWithError(code, why)
	}
	ctx, cancel := context.WithTimeout(e.ctx, e.cfg.HandshakeTimeout)
	defer cancel()
	ctrl, err := qc.AcceptStream(ctx)
	if err != nil {
		refuse(codeProtocol, "no control stream: "+err.Error())
		return
	}
	deadline, _ := ctx.Deadline()
	ctrl.SetDeadline(deadline)
	body, err := wire.ReadFrameGrow(ctrl, new([]byte), wire.MaxControlSize)
	if err != nil {
		refuse(codeProtocol, "reading hello: "+err.Error())
		return
	}
	m, err := wire.DecodeControl(body)
	if err != nil {
		refuse(codeProtocol, err.Error())
		return
	}
	h := m.GetHello()
	switch {
	case h == nil:
		refuse(codeProtocol, fmt.Sprintf("expected hello, got %T", m.Body))
		return
	case h.NodeId != peer:
		refuse(codeProtocol, fmt.Sprintf("hello names node %q, certificate names %q", h.NodeId, peer))
		return
	case h.ToNodeId != e.cfg.ID:
		refuse(codeProtocol, fmt.Sprintf("dialed node %q, reached %q", h.ToNodeId, e.cfg.ID))
		return
	case h.ProtocolVersion != wire.ProtocolVersion:
		refuse(codeProtocol, fmt.Sprintf("protocol version %d, want %d", h.ProtocolVersion, wire.ProtocolVersion))
		return
	}

	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		qc.CloseWithError(codeClosed, "endpoint closed")
		return
	}
	ps := e.peerLocked(peer)
	accept := true
	if old := ps.conn; old != nil && !old.isDead() && old.peerInc == h.Incarnation {
		// Same peer process: keep the connection dialed by the lower ID.
		// If the peer dialed the old one too, it has given up on it.
		if old.dialedByMe && e.cfg.ID < peer {
			accept = false
		}
	} else if ps.dialing && e.cfg.ID < peer {
		accept = false // our dial wins; the peer accepts it
	}
	ack := &wire.Control{Body: &wire.Control_HelloAck{HelloAck: &wire.HelloAck{
		Accepted: accept, ProtocolVersion: wire.ProtocolVersion, Epoch: e.epoch.Load(), Incarnation: e.incarnation,
	}}}
	if accept {
		// Installed before the ack goes out: once the dialer holds the
		// ack, Conn on this side finds the connection. writeControl keeps
		// the ack from interleaving with an early Abort.
		c := newConn(e, peer, qc, ctrl, false, h.Incarnation)
		ctrl.SetDeadline(time.Time{})
		e.installLocked(ps, c)
		e.mu.Unlock()
		if err := c.writeControl(ctx, ack); err != nil {
			c.close(codeProtocol, "hello ack: "+err.Error(), fmt.Errorf("%w: sending hello ack: %v", transport.ErrPeerLost, err))
		}
		return
	}
	e.mu.Unlock()
	ack.GetHelloAck().Reason = errDuplicate.Error()
	frame, err := wire.AppendFrame(nil, ack, wire.MaxControlSize)
	if err == nil {
		_, err = ctrl.Write(frame)
	}
	if err != nil {
		qc.CloseWithError(codeProtocol, err.Error())
		return
	}
	// A refused dialer closes after reading the ack; close anyway after a
	// grace period so a silent one cannot hold the slot.
	select {
	case <-qc.Context().Done():
	case <-time.After(e.cfg.HandshakeTimeout):
		qc.CloseWithError(codeDuplicate, "duplicate")
	case <-e.ctx.Done():
	}
}
