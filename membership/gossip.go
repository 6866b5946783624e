package membership

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/ringtrain/ringtrain/membership/agree"
	"github.com/ringtrain/ringtrain/transport"
)

// Member is this node's membership agent: its gossip presence, its view of
// the roster and its part in epoch agreement. Boundary must not be called
// concurrently; the other methods are safe for concurrent use.
type Member struct {
	cfg  Config
	log  *slog.Logger
	ml   *memberlist.Memberlist
	ctx  context.Context // lifetime of background work, ended by Close
	stop context.CancelFunc
	wg   sync.WaitGroup

	// The driver goroutine (drive) owns mach; the others reach it only
	// through these channels.
	mach      *agree.Machine
	calls     chan *call         // Boundary → driver
	inbox     chan agree.Msg     // control receivers → driver
	viewDirty chan struct{}      // gossip changed: Observe again
	lost      chan string        // peers whose transport connection was lost
	metaDirty chan struct{}      // wakes metaLoop to gossip new metadata
	metaStop  context.CancelFunc // ends metaLoop (Close, before its own UpdateNode)
	metaDone  chan struct{}      // closed when metaLoop returned
	leaveReq  chan struct{}      // closed by RequestLeave
	leaveOnce sync.Once
	fail      *failer // peers gossip declared dead, for the endpoint's FailPeer

	sendMu sync.Mutex
	queues map[string]chan []byte // per-peer control send queues (send.go)

	// Control receivers, one per connection the endpoint announces
	// (recv.go).
	watcher   transport.ConnWatcher
	stopWatch func()
	recvMu    sync.Mutex
	recvDone  bool // shutdown began: start no receiver

	// returned is the epoch number Boundary last returned; only the
	// Boundary caller's goroutine touches it.
	returned uint64

	mu         sync.Mutex
	meta       Meta
	metaBytes  []byte
	peers      map[string]*Peer
	watches    map[*deathWatch]struct{} // AbortOnDeath registrations
	changed    chan struct{}            // closed and replaced on every roster change
	announced  map[string]bool          // peers OnRoster has seen
	announce   chan struct{}            // closed and replaced when announced grows
	refusal    error                    // last incompatible peer seen while joining
	gossipAddr string                   // this node's gossip "host:port"
	held       Epoch                    // the machine's held epoch, as last persisted
	active     bool                     // the machine runs held
}

// New starts gossip, joins the seeds (retrying until cfg.JoinTimeout) and
// returns a Member in state joining. The first epoch forms once
// cfg.MinMembers nodes are present and they call Boundary.
func New(ctx context.Context, cfg Config) (*Member, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	watcher, ok := cfg.Endpoint.(transport.ConnWatcher)
	if !ok {
		return nil, fmt.Errorf("membership: node %s: endpoint %T does not announce its connections (transport.ConnWatcher)", cfg.ID, cfg.Endpoint)
	}
	m := &Member{
		cfg:       cfg,
		watcher:   watcher,
		log:       cfg.Logger.With("node", cfg.ID),
		mach:      agree.New(cfg.machine()),
		calls:     make(chan *call),
		inbox:     make(chan agree.Msg, 1024),
		viewDirty: make(chan struct{}, 1),
		lost:      make(chan string, 256),
		metaDirty: make(chan struct{}, 1),
		leaveReq:  make(chan struct{}),
		fail:      newFailer(cfg.Endpoint, cfg.DataEndpoint),
		queues:    make(map[string]chan []byte),
		peers:     make(map[string]*Peer),
		watches:   make(map[*deathWatch]struct{}),
		changed:   make(chan struct{}),
		announced: make(map[string]bool),
		announce:  make(chan struct{}),
		held:      fromAgree(cfg.Hard.Held),
	}
	m.meta = Meta{ID: cfg.ID, QUICAddr: cfg.QUICAddr, State: StateJoining, Protocol: cfg.ProtocolVersion, Fingerprint: cfg.Fingerprint, Plane: cfg.Plane,
		Epoch: cfg.Hard.Held.Number, NoState: true, Amnesiac: cfg.Hard.Amnesiac}
	b, err := m.meta.MarshalBinary()
	if err != nil {
		return nil, fmt.Errorf("membership: node %s: %w", cfg.ID, err)
	}
	m.metaBytes = b

	g := *cfg.Gossip
	g.Name = cfg.ID
	d := &delegate{m: m}
	g.Delegate, g.Events, g.Alive, g.Merge = d, d, d, d
	g.SecretKey = cfg.GossipKey
	g.LogOutput = nil
	g.Logger = slog.NewLogLogger(m.log.With("component", "memberlist").Handler(), slog.LevelDebug)
	m.ctx, m.stop = context.WithCancel(context.Background())
	ml, err := memberlist.Create(&g)
	if err != nil {
		m.stop()
		return nil, fmt.Errorf("membership: node %s: start gossip: %w", cfg.ID, err)
	}
	m.mu.Lock()
	m.ml = ml
	// Read once, now: memberlist rewrites its local node on every
	// UpdateNode, so reading it later races with metaLoop.
	m.gossipAddr = ml.LocalNode().Address()
	m.mu.Unlock()
	if len(cfg.Seeds) > 0 {
		if err := m.join(ctx); err != nil {
			ml.Shutdown()
			m.stop()
			return nil, err
		}
	}
	// metaLoop has a lifetime of its own: Close ends it before it calls
	// UpdateNode itself (memberlist's UpdateNode must not run twice at once).
	metaCtx, metaStop := context.WithCancel(m.ctx)
	m.metaStop, m.metaDone = metaStop, make(chan struct{})
	m.stopWatch = watcher.WatchConns(m.onConn)
	m.wg.Add(3)
	go m.reconnectLoop()
	go m.metaLoop(metaCtx)
	go m.failLoop()
	go m.drive()
	return m, nil
}

// join joins the seeds, retrying until JoinTimeout, then joins once more a
// second later in the background: a node that joined before the seed knew
// the others would otherwise wait for the next full state sync.
func (m *Member) join(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, m.cfg.JoinTimeout)
	defer cancel()
	for {
		n, err := m.ml.Join(m.cfg.Seeds)
		m.mu.Lock()
		refusal := m.refusal
		m.mu.Unlock()
		if refusal != nil {
			return fmt.Errorf("membership: node %s: join refused: %w", m.cfg.ID, refusal)
		}
		if n > 0 {
			break
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("membership: node %s: join seeds %v: %w (last error: %v)", m.cfg.ID, m.cfg.Seeds, ctx.Err(), err)
		case <-time.After(200 * time.Millisecond):
		}
	}
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		select {
		case <-m.ctx.Done():
		case <-time.After(time.Second):
			m.ml.Join(m.cfg.Seeds)
		}
	}()
	return nil
}

// reconnectLoop re-joins peers that gossip declared dead (not left), so the
// two sides of a healed partition merge again; memberlist itself never
// probes dead nodes.
func (m *Member) reconnectLoop() {
	defer m.wg.Done()
	if m.cfg.ReconnectInterval <= 0 {
		return
	}
	t := time.NewTicker(m.cfg.ReconnectInterval)
	defer t.Stop()
	for {
		select {
		case <-m.ctx.Done():
			return
		case <-t.C:
		}
		m.mu.Lock()
		var addrs []string
		for _, p := range m.peers {
			if !p.Alive && !p.Left && p.GossipAddr != "" {
				addrs = append(addrs, p.GossipAddr)
			}
		}
		m.mu.Unlock()
		if len(addrs) > 0 {
			m.ml.Join(addrs)
		}
	}
}

// ID returns this node's ID.
func (m *Member) ID() string { return m.cfg.ID }

// GossipAddr returns the "host:port" other nodes use as a seed.
func (m *Member) GossipAddr() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.gossipAddr
}

// Roster returns a snapshot of the compatible nodes gossip knows.
func (m *Member) Roster() Roster {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.rosterLocked()
}

func (m *Member) rosterLocked() Roster {
	r := Roster{Self: m.cfg.ID}
	for _, p := range m.peers {
		r.Peers = append(r.Peers, *p)
	}
	slices.SortFunc(r.Peers, func(a, b Peer) int {
		switch {
		case a.ID < b.ID:
			return -1
		case a.ID > b.ID:
			return 1
		}
		return 0
	})
	return r
}

// Changed returns a channel closed at the next roster change.
func (m *Member) Changed() <-chan struct{} {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.changed
}

// Close leaves the gossip gracefully (peers see "left", not a failure) and
// stops all background work. Use Crash in tests to vanish abruptly.
func (m *Member) Close() error {
	// Advertise the leave first, so that peers take the coming "gone" for
	// a leave and not a failure (no FailPeer, no reconnect attempts). The
	// update is gossiped here rather than by metaLoop, and waited for:
	// memberlist drops a queued update about a node once its leave is
	// queued.
	m.mu.Lock()
	m.meta.State = StateLeaving
	b, err := m.meta.MarshalBinary()
	if err == nil {
		m.metaBytes = b
	}
	m.mu.Unlock()
	m.stopMetaLoop()
	if err == nil {
		err = m.ml.UpdateNode(500 * time.Millisecond)
	}
	if err != nil {
		m.log.Debug("gossip leaving state", "err", err)
	}
	err = m.ml.Leave(time.Second)
	return errors.Join(err, m.shutdown())
}

// Crash stops gossip without leaving: peers detect a failure. Tests use it
// to emulate a process dying.
func (m *Member) Crash() error { return m.shutdown() }

func (m *Member) shutdown() error {
	err := m.ml.Shutdown()
	m.stop()
	m.stopReceivers()
	m.stopMetaLoop()
	m.wg.Wait()
	return err
}

// stopMetaLoop ends metaLoop and waits for it (idempotent).
func (m *Member) stopMetaLoop() {
	m.metaStop()
	<-m.metaDone
}

// publishMeta applies update to this node's metadata and, if it changed
// anything, re-encodes it and asks metaLoop to gossip it.
func (m *Member) publishMeta(update func(*Meta) bool) {
	m.mu.Lock()
	if !update(&m.meta) {
		m.mu.Unlock()
		return
	}
	b, err := m.meta.MarshalBinary()
	if err == nil {
		m.metaBytes = b
	}
	m.mu.Unlock()
	if err != nil {
		m.log.Error("encode metadata", "err", err)
		return
	}
	select {
	case m.metaDirty <- struct{}{}:
	default: // an update is already pending; it reads the latest bytes
	}
}

// metaLoop gossips metadata changes. memberlist's UpdateNode blocks until
// the update spread or its timeout passed, so it runs here, off the
// protocol's path.
func (m *Member) metaLoop(ctx context.Context) {
	defer close(m.metaDone)
	for {
		select {
		case <-ctx.Done():
			return
		case <-m.metaDirty:
		}
		// The update is queued before UpdateNode waits; a short wait keeps
		// Close prompt, and gossip spreads the update regardless.
		if err := m.ml.UpdateNode(50 * time.Millisecond); err != nil {
			m.log.Debug("gossip metadata update", "err", err)
		}
	}
}

// updatePeer records gossip's news about n; called from memberlist's event
// goroutine.
func (m *Member) updatePeer(n *memberlist.Node, alive bool) {
	if n.Name == m.cfg.ID {
		return
	}
	var meta Meta
	if err := meta.UnmarshalBinary(n.Meta); err != nil {
		m.log.Warn("ignoring peer with bad metadata", "peer", n.Name, "err", err)
		return
	}
	// memberlist's Node.State is not maintained in events (its node
	// state shadows it): a peer that is gone left gracefully when its last
	// metadata said it was leaving, and failed otherwise.
	left := !alive && meta.State == StateLeaving
	m.mu.Lock()
	p := &Peer{Meta: meta, GossipAddr: n.Address(), Alive: alive, Left: left}
	m.peers[n.Name] = p
	close(m.changed)
	m.changed = make(chan struct{})
	if !alive && !left {
		m.abortWatchersLocked(n.Name)
	}
	r := m.rosterLocked()
	m.mu.Unlock()
	if !alive && !left {
		// Collectives blocked on a dead peer fail now, not at the
		// transport's idle timeout.
		m.fail.report(n.Name, n.Address())
	}
	m.viewChanged()
	if m.cfg.OnRoster != nil {
		m.cfg.OnRoster(r)
	}
	m.mu.Lock()
	if !m.announced[n.Name] {
		// OnRoster has now seen this peer (its address is registered):
		// Boundary may return an epoch that has it.
		m.announced[n.Name] = true
		close(m.announce)
		m.announce = make(chan struct{})
	}
	m.mu.Unlock()
}

// delegate adapts memberlist's delegate interfaces to a Member. memberlist
// calls them from its own goroutines; each takes m.mu as needed.
type delegate struct{ m *Member }

func (d *delegate) NodeMeta(limit int) []byte {
	d.m.mu.Lock()
	defer d.m.mu.Unlock()
	if len(d.m.metaBytes) > limit {
		// Cannot happen: MarshalBinary bounds the size far below
		// memberlist's limit. Advertise nothing rather than panic.
		return nil
	}
	return slices.Clone(d.m.metaBytes)
}

func (d *delegate) NotifyMsg([]byte)                     {}
func (d *delegate) GetBroadcasts(int, int) [][]byte      { return nil }
func (d *delegate) LocalState(bool) []byte               { return nil }
func (d *delegate) MergeRemoteState([]byte, bool)        {}
func (d *delegate) NotifyJoin(n *memberlist.Node)        { d.m.updatePeer(n, true) }
func (d *delegate) NotifyUpdate(n *memberlist.Node)      { d.m.updatePeer(n, true) }
func (d *delegate) NotifyLeave(n *memberlist.Node)       { d.m.updatePeer(n, false) }
func (d *delegate) NotifyAlive(n *memberlist.Node) error { return d.check(n) }

// NotifyMerge vets every node of a cluster we join (or that joins us): one
// incompatible node cancels the merge, and the refusal is remembered so the
// joining side's New returns it.
func (d *delegate) NotifyMerge(nodes []*memberlist.Node) error {
	for _, n := range nodes {
		if err := d.check(n); err != nil {
			d.m.mu.Lock()
			d.m.refusal = err
			d.m.mu.Unlock()
			d.m.log.Warn("refusing gossip merge", "err", err)
			return err
		}
	}
	return nil
}

func (d *delegate) check(n *memberlist.Node) error {
	if n.Name == d.m.cfg.ID {
		return nil
	}
	var meta Meta
	if err := meta.UnmarshalBinary(n.Meta); err != nil {
		return fmt.Errorf("refusing peer %s: %w", n.Name, err)
	}
	if meta.ID != n.Name {
		return fmt.Errorf("%w: peer %s advertises node ID %s", ErrIncompatible, n.Name, meta.ID)
	}
	d.m.mu.Lock()
	self := d.m.meta
	d.m.mu.Unlock()
	if err := compatible(self, meta); err != nil {
		return fmt.Errorf("refusing peer %s: %w", n.Name, err)
	}
	return nil
}

// Config returns the configuration the member runs with.
func (m *Member) Config() Config { return m.cfg }
