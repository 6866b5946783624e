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
	"github.com/ringtrain/ringtrain/transport/internal/peers"
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

	// peers holds one connection per peer and the rules of dialing,
	// duplicates and restarted peers (transport/internal/peers).
	peers *peers.Table[*conn]
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
	}
	e.ctx, e.cancel = context.WithCancel(context.Background())
	e.peers = peers.New(peers.Config[*conn]{
		Self: cfg.ID, Peers: cfg.Peers, Resolve: cfg.Resolve,
		DialOnce: e.dialOnce, Permanent: permanent,
		HandshakeTimeout: cfg.HandshakeTimeout, Done: e.ctx,
	})
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
		e.cancel()
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
func (e *Endpoint) AddPeer(id, addr string) { e.peers.AddPeer(id, addr) }

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
	for _, c := range e.peers.Conns() {
		c.dropBelow(e.epoch.Load())
	}
}

// Epoch is the epoch set with SetEpoch.
func (e *Endpoint) Epoch() uint64 { return e.epoch.Load() }

// Close closes every connection (peers see ErrPeerLost) and the socket.
func (e *Endpoint) Close() error {
	conns, ok := e.peers.Close()
	if !ok {
		return nil
	}
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
	if c, _ := e.peers.FailPeer(id, err); c != nil {
		c.close(codeFailed, "declared dead: "+transport.TruncateReason(fmt.Sprint(cause)), err)
	}
}

// Conn returns the connection to peer, dialing it if there is none.
func (e *Endpoint) Conn(ctx context.Context, peer string) (transport.Conn, error) {
	return e.peers.Conn(ctx, peer)
}

// WatchConns implements transport.ConnWatcher: f sees every connection
// this endpoint installs, dialed or accepted (a refused duplicate dial is
// never installed, so never announced). f runs with the endpoint's lock
// held.
func (e *Endpoint) WatchConns(f func(transport.Conn)) (stop func()) { return e.peers.WatchConns(f) }

// Connected implements transport.ConnWatcher.
func (e *Endpoint) Connected() []string { return e.peers.Connected() }

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
			return nil, peers.ErrDuplicate
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
	case !ack.Accepted && ack.Reason == peers.ErrDuplicate.Error():
		qc.CloseWithError(codeDuplicate, "duplicate")
		return nil, peers.ErrDuplicate
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

	var c *conn
	err = e.peers.Admit(peer, h.Incarnation, func() (*conn, error) {
		// Installed before the ack goes out: once the dialer holds the
		// ack, Conn on this side finds the connection.
		c = newConn(e, peer, qc, ctrl, false, h.Incarnation)
		ctrl.SetDeadline(time.Time{})
		return c, nil
	})
	ack := &wire.Control{Body: &wire.Control_HelloAck{HelloAck: &wire.HelloAck{
		Accepted: err == nil, ProtocolVersion: wire.ProtocolVersion, Epoch: e.epoch.Load(), Incarnation: e.incarnation,
	}}}
	switch {
	case err == nil:
		// writeControl keeps the ack from interleaving with an early Abort.
		if err := c.writeControl(ctx, ack); err != nil {
			c.close(codeProtocol, "hello ack: "+err.Error(), fmt.Errorf("%w: sending hello ack: %v", transport.ErrPeerLost, err))
		}
		return
	case !errors.Is(err, peers.ErrDuplicate):
		qc.CloseWithError(codeClosed, "endpoint closed")
		return
	}
	ack.GetHelloAck().Reason = peers.ErrDuplicate.Error()
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
