package tcp

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"

	"github.com/ringtrain/ringtrain/internal/secret"
	"github.com/ringtrain/ringtrain/transport"
	"github.com/ringtrain/ringtrain/transport/internal/peers"
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

	// chunks recycles the full-size sub-frame buffers of messages that
	// arrive before their Recv (recv.go: stageBuf), *[maxSubFrame]byte.
	chunks sync.Pool

	ctx    context.Context // done when the endpoint closes
	cancel context.CancelFunc
	wg     sync.WaitGroup

	// peers holds one connection (bundle of lanes) per peer and the rules
	// of dialing, duplicates and restarted peers
	// (transport/internal/peers).
	peers *peers.Table[*conn]

	pmu  sync.Mutex
	pend map[pendKey]*pendBundle // bundles whose lanes are arriving (lanes.go)
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
		pend:        make(map[pendKey]*pendBundle),
	}
	e.ctx, e.cancel = context.WithCancel(context.Background())
	e.peers = peers.New(peers.Config[*conn]{
		Self: cfg.ID, Peers: cfg.Peers, Resolve: cfg.Resolve,
		DialOnce: e.dialOnce, Permanent: permanent,
		HandshakeTimeout: cfg.HandshakeTimeout, Done: e.ctx,
	})
	e.wg.Go(e.acceptLoop)
	if cfg.IdleClose > 0 {
		e.wg.Go(func() { e.peers.IdleLoop(e.ctx, e.idle()) })
	}
	return e, nil
}

// ID is this node's ID.
func (e *Endpoint) ID() string { return e.cfg.ID }

// Addr is the bound TCP address, to give to peers.
func (e *Endpoint) Addr() net.Addr { return e.ln.Addr() }

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
		for _, l := range c.all() {
			l.dropBelow(e.epoch.Load())
		}
	}
}

// Epoch is the epoch set with SetEpoch.
func (e *Endpoint) Epoch() uint64 { return e.epoch.Load() }

// Close ends every connection gracefully within Config.Linger (the peer
// reads everything Send returned for, then sees ErrPeerLost), stops
// accepting and waits for every goroutine of the endpoint.
func (e *Endpoint) Close() error {
	conns, ok := e.peers.Close()
	if !ok {
		return nil
	}
	err := e.ln.Close()
	var wg sync.WaitGroup
	for _, c := range conns {
		wg.Go(func() { c.goodbye(kindGoodbye, transport.ErrClosed, e.cfg.Linger) })
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
	if c, _ := e.peers.FailPeer(id, err); c != nil {
		c.kill(err)
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
