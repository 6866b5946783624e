package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ringtrain/ringtrain/collective"
	"github.com/ringtrain/ringtrain/internal/secret"
	"github.com/ringtrain/ringtrain/membership"
	"github.com/ringtrain/ringtrain/transport/quic"
)

// Step is what the caller tells Boundary about the step it just ran (see
// membership.Step: Done steps applied, the step's error, Leave, NoState).
type Step = membership.Step

// Boundary is the answer of Node.Boundary: the epoch the next step runs in.
type Boundary struct {
	// Group is the epoch's collective group; every member of the epoch
	// holds one with the same members in the same order. Nil when Left.
	Group   *collective.Group
	Epoch   uint64
	Members []string // in ring (rank) order
	Rank    int
	Size    int
	// Changed: a new epoch began (its Group is new). Groups of older
	// epochs stay valid objects, but their operations fail with
	// transport.ErrEpoch: the endpoint refuses older epochs' messages.
	Changed bool
	// Step is the number of steps applied to the state the epoch
	// continues from (after a Restore, or for a target of a deferred
	// sync, the source's count).
	Step uint64
	// Sync is the state transfer this epoch prescribes (zero when nobody
	// syncs). With Snapshot and Restore set, Boundary has already run it;
	// in deferred mode the caller runs SendState on Sync.Source and
	// RecvState on each of Sync.Targets before the epoch's first
	// collective.
	Sync membership.SyncOrder
	// Left: this node left the job (after Step.Leave or RequestLeave);
	// Close it.
	Left bool
}

// The QUIC keep-alive period and idle timeout of a node's endpoint, and
// how long a connection may carry nothing before the endpoint closes it
// (quic.Config.IdleClose, and tcp.Config.IdleClose for a TCP data plane):
// the epoch changes' wide exchanges leave connections to many peers, but a
// node keeps only its ring links (named in the data plane's KeepOpen for
// the epoch) and those the control plane keeps using (its coordinator's,
// every step). A minute keeps a slow snapshot's state sync
// or a long pause between steps from closing a connection still wanted;
// one closed anyway is dialed again when next needed.
const (
	quicKeepAlive   = time.Second
	quicIdleTimeout = 5 * time.Second
	quicIdleClose   = time.Minute
)

// Node is one running member of a job: its QUIC endpoint, its gossip and
// its part in epoch agreement. Boundary, then SendState or RecvState, are
// called by one training loop (Boundary is never concurrent with itself);
// the accessors and RequestLeave are safe for concurrent use. Close ends
// the node; call it after the loop returned (or cancel the loop's ctx).
type Node struct {
	cfg      Config
	log      *slog.Logger
	ep       *quic.Endpoint // control plane: membership messages, state sync
	data     dataPlane      // the collectives' endpoint: ep itself, or TCP
	mem      *membership.Member
	quicAddr string
	leave    atomic.Bool

	mu  sync.Mutex // serializes Boundary (membership.Member requires it)
	cur Boundary   // the last boundary's answer

	closeOnce sync.Once
	closeErr  error
}

// Start starts a node: its QUIC endpoint, gossip (joining cfg.Seeds) and
// membership. It returns once the node has joined the gossip; the first
// epoch forms in Boundary once cfg.MinPeers nodes are present. ctx bounds
// the join; it does not end the node (Close does).
func Start(ctx context.Context, cfg Config) (*Node, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	log := cfg.Logger.With("node", cfg.ID)
	sec, insecure, err := secretFor(&cfg)
	if err != nil {
		return nil, err
	}
	if insecure {
		log.Warn("no cluster secret: using the well-known insecure one (traffic is encrypted, but anyone who can reach the ports can join)")
	}
	cluster, err := secret.New(sec)
	if err != nil {
		return nil, fmt.Errorf("node %s: start: cluster secret: %w", cfg.ID, err)
	}
	host, port, err := splitHostPort(cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("node %s: start: listen %q: %w", cfg.ID, cfg.Listen, err)
	}
	var advHost string
	var advPort int
	if cfg.Advertise != "" {
		advHost, advPort, err = splitHostPort(cfg.Advertise)
		if err == nil {
			advHost, err = resolveHost(advHost) // memberlist advertises IP addresses only
		}
		if err != nil {
			return nil, fmt.Errorf("node %s: start: advertise %q: %w", cfg.ID, cfg.Advertise, err)
		}
	}

	// QUIC's idle timeout is the transport's own failure detector, a
	// backstop behind gossip's (which declares a dead peer within about
	// 1.5 s and aborts the steps waiting on it, see AbortOnDeath): on a
	// loaded machine a shorter one risked false losses.
	ep, data, err := listenPlanes(cfg, sec, cfg.Logger)
	if err != nil {
		return nil, fmt.Errorf("node %s: start: %w", cfg.ID, err)
	}
	closeEps := func() {
		if data != dataPlane(ep) {
			data.Close()
		}
		ep.Close()
	}
	quicAddr, err := advertised(cfg.QUICAdvertise, cfg.Advertise, ep.Addr())
	if err != nil {
		closeEps()
		return nil, fmt.Errorf("node %s: start: QUIC advertise address: %w", cfg.ID, err)
	}

	// memberlist's timers: measured on loopback for a local job, its LAN
	// defaults otherwise.
	mc := membership.LANConfig()
	if loopbackOnly(&cfg) {
		mc = membership.LocalConfig()
	}
	mc.Gossip.BindAddr, mc.Gossip.BindPort, mc.Gossip.AdvertisePort = host, port, port
	if cfg.Advertise != "" {
		mc.Gossip.AdvertiseAddr, mc.Gossip.AdvertisePort = advHost, advPort
	}
	mc.ID = cfg.ID
	mc.QUICAddr = quicAddr
	mc.Fingerprint = cfg.Fingerprint
	mc.Plane = plane(&cfg)
	mc.Seeds = cfg.Seeds
	mc.GossipKey = cluster.GossipKey()
	mc.Endpoint = ep
	if data != dataPlane(ep) {
		mc.DataEndpoint = data
	}
	mc.MinMembers = cfg.MinPeers
	mc.Snapshot, mc.Restore = cfg.Snapshot, cfg.Restore
	mc.Held = membership.Epoch{Number: cfg.Held.Number, Members: slices.Clone(cfg.Held.Members)}
	if cfg.StateFile != "" {
		hard, err := readStateFile(cfg.StateFile)
		if err != nil {
			closeEps()
			return nil, fmt.Errorf("node %s: start: %w", cfg.ID, err)
		}
		mc.Hard = hard
		mc.Persist = func(h membership.HardState) error { return writeStateFile(cfg.StateFile, h) }
	}
	mc.OnRoster = func(r membership.Roster) {
		// Gossip tells every node where its peers' endpoints listen.
		for _, p := range r.Peers {
			if p.QUICAddr != "" && p.ID != cfg.ID {
				ep.AddPeer(p.ID, p.QUICAddr)
				if data != dataPlane(ep) {
					data.AddPeer(p.ID, p.QUICAddr) // the same port number, on TCP
				}
			}
		}
	}
	mc.Logger = cfg.Logger.With("component", "membership")
	mem, err := membership.New(ctx, mc)
	if err != nil {
		closeEps()
		return nil, fmt.Errorf("node %s: start: %w", cfg.ID, err)
	}
	return &Node{cfg: cfg, log: log, ep: ep, data: data, mem: mem, quicAddr: quicAddr}, nil
}

// Boundary is called between steps, and once before the first one (Done
// 0; NoState for a node without state). It returns the epoch the next
// step runs in, with that epoch's Group: when membership changed it has
// raised the endpoint's epoch floor and connected the new ring. A node
// waiting for admission blocks here. When the new ring cannot be
// connected (a member died in between), the failure is reported like a
// failed step and the next epoch is formed, until ctx ends.
func (n *Node) Boundary(ctx context.Context, s Step) (Boundary, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	failures := 0
	for {
		if n.leave.Load() {
			s.Leave = true
		}
		out, err := n.mem.Boundary(ctx, s)
		if err != nil {
			return Boundary{}, fmt.Errorf("node %s: boundary after step %d (epoch %d): %w", n.cfg.ID, s.Done, n.cur.Epoch, err)
		}
		b := Boundary{Epoch: out.Epoch.Number, Members: slices.Clone(out.Epoch.Members), Changed: out.Changed, Step: out.Step, Left: out.Left, Sync: out.Sync}
		if out.Left {
			n.cur = b
			return b, nil
		}
		if !out.Changed && n.cur.Group != nil && n.cur.Epoch == out.Epoch.Number {
			b.Group, b.Rank, b.Size = n.cur.Group, n.cur.Rank, n.cur.Size
			n.cur = b
			return b, nil
		}
		// A new epoch: stale chunks of aborted operations in older
		// epochs are refused and freed from now on.
		n.ep.SetEpoch(out.Epoch.Number)
		if n.data != dataPlane(n.ep) {
			n.data.SetEpoch(out.Epoch.Number)
		}
		n.data.KeepOpen(ringNeighbours(out.Epoch.Members, n.cfg.ID)...)
		g, err := collective.New(ctx, collective.Config{Endpoint: n.data, Members: out.Epoch.Members, Epoch: out.Epoch.Number,
			ChunkBytes: n.cfg.ChunkBytes, Timeout: n.cfg.OpTimeout, Lanes: n.cfg.Lanes})
		if err != nil {
			err = fmt.Errorf("node %s: epoch %d: connect the ring: %w", n.cfg.ID, out.Epoch.Number, err)
			n.cur = Boundary{Epoch: out.Epoch.Number}
			if ctx.Err() != nil {
				return Boundary{}, err
			}
			n.log.Warn("cannot reach the new ring; forming the next epoch", "epoch", out.Epoch.Number, "err", err)
			// A failure that repeats (a peer that keeps refusing the
			// ring connection) must not spin epochs as fast as the
			// agreement runs: back off, doubling, after the first.
			if failures++; failures > 1 {
				if werr := sleepCtx(ctx, connectBackoff(failures)); werr != nil {
					return Boundary{}, err
				}
			}
			next := Step{Done: out.Step, Err: err, Leave: s.Leave, NoState: s.NoState && !out.Restored}
			if n.deferred() && out.Sync.Has(n.cfg.ID) {
				// The state was never received: still what we had.
				next.Done = s.Done
			}
			s = next
			continue
		}
		b.Group, b.Rank, b.Size, b.Changed = g, g.Rank(), g.Size(), true
		n.cur = b
		return b, nil
	}
}

// connectBackoff is the wait before forming the next epoch after the
// failures-th consecutive failure to connect a new ring (failures ≥ 2):
// 50 ms, doubling, at most 2 s.
func connectBackoff(failures int) time.Duration {
	return min(50*time.Millisecond<<min(failures-2, 6), 2*time.Second)
}

// sleepCtx waits d or until ctx ends, returning ctx's error then.
func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// deferred reports whether the caller moves state (no Snapshot/Restore).
func (n *Node) deferred() bool { return n.cfg.Snapshot == nil }

// RequestLeave asks this node to leave the job: a node waiting for
// admission stops waiting at once, a member announces its leave at its
// next Boundary (the others form the next epoch without it, so no
// collective fails). Boundary then returns Left. Safe to call from any
// goroutine, more than once.
func (n *Node) RequestLeave() {
	n.leave.Store(true)
	n.mem.RequestLeave()
}

// Held returns the membership epoch this node last applied (zero if none,
// or Config.Held until the node applies one): store it in the checkpoint
// and pass it back as Config.Held after a restart. Safe from any
// goroutine; it waits for a Boundary in progress.
func (n *Node) Held() membership.Epoch {
	n.mu.Lock()
	defer n.mu.Unlock()
	h := n.mem.Held()
	return membership.Epoch{Number: h.Number, Members: slices.Clone(h.Members)}
}

// Connections returns the peers this node holds a live QUIC connection to
// (its ring neighbours and its epoch's coordinator in steady state; see
// membership). Safe from any goroutine.
func (n *Node) Connections() []string { return connectedUnion(n.ep, n.data) }

// ID is this node's ID.
func (n *Node) ID() string { return n.cfg.ID }

// GossipAddr is the gossip address other nodes give as a seed.
func (n *Node) GossipAddr() string { return n.mem.GossipAddr() }

// QUICAddr is the data-plane address this node advertises.
func (n *Node) QUICAddr() string { return n.quicAddr }

// Close leaves the gossip (peers see a leave, not a failure), then closes
// the endpoint, which ends the operations still running on any Group.
// It waits for everything Start started; later calls return the first
// call's result.
func (n *Node) Close() error {
	n.closeOnce.Do(func() {
		err := n.mem.Close()
		if n.data != dataPlane(n.ep) {
			err = errors.Join(err, n.data.Close())
		}
		err = errors.Join(err, n.ep.Close())
		if err != nil {
			n.closeErr = fmt.Errorf("node %s: close: %w", n.cfg.ID, err)
		}
	})
	return n.closeErr
}

// AbortOnDeath returns a context derived from ctx that is cancelled as soon
// as gossip declares one of peers dead (membership.Member.AbortOnDeath):
// run an epoch's collectives under it so that one blocked, directly or
// through other members, on a dead peer fails at once instead of at the
// transport's timeout. The caller must call the CancelFunc.
func (n *Node) AbortOnDeath(ctx context.Context, peers []string) (context.Context, context.CancelFunc) {
	return n.mem.AbortOnDeath(ctx, peers)
}

// ringNeighbours returns the peers next to id in the ring of members (the
// order collective.New connects), none if id is not a member.
func ringNeighbours(members []string, id string) []string {
	r := slices.Index(members, id)
	if r < 0 || len(members) < 2 {
		return nil
	}
	n := len(members)
	return []string{members[(r+1)%n], members[(r+n-1)%n]}
}
