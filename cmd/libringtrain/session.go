package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/ringtrain/ringtrain/collective"
	"github.com/ringtrain/ringtrain/internal/secret"
	"github.com/ringtrain/ringtrain/membership"
	"github.com/ringtrain/ringtrain/transport/quic"
)

// Sync roles a boundary hands the host.
const (
	roleNone = 0
	roleSend = 1 // this node must call rt_state_send with its state
	roleRecv = 2 // this node must call rt_state_recv and install the state
)

// boundary is what rt_boundary reports.
type boundary struct {
	Epoch   uint64
	Step    uint64
	Rank    int
	Size    int
	Role    int
	Changed bool
	Left    bool
	Members []string
}

// session is one node: its QUIC endpoint, membership (in deferred sync
// mode: Boundary names the transfer, the host runs it) and the current
// epoch's collective group. The host serialises its state only on the one
// member that must send it, and only when someone is behind.
type session struct {
	cfg settings
	log *slog.Logger
	// ctx bounds every call of this node; close cancels it, which ends a
	// boundary still waiting for admission.
	ctx    context.Context
	cancel context.CancelFunc
	ep     *quic.Endpoint
	mem    *membership.Member
	wire   collective.DType // wire dtype of fp32 all-reduces

	// opMu serialises boundary and state calls (one training loop per
	// node); leave may be set from any thread.
	opMu  sync.Mutex
	leave atomic.Bool

	mu     sync.Mutex // guards the fields below
	g      *collective.Group
	last   boundary
	sync   membership.SyncOrder
	closed bool
}

func startSession(ctx context.Context, cfg settings) (_ *session, err error) {
	level := map[string]slog.Level{"debug": slog.LevelDebug, "info": slog.LevelInfo, "warn": slog.LevelWarn, "error": slog.LevelError}[cfg.LogLevel]
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	s := &session{cfg: cfg, log: log.With("node", cfg.NodeID)}
	if s.wire, err = collective.ParseDType(cfg.Wire); err != nil {
		return nil, fmt.Errorf("wire-dtype: %w", err)
	}
	cluster, err := secret.New(cfg.Secret)
	if err != nil {
		return nil, fmt.Errorf("cluster secret: %w", err)
	}
	s.ep, err = quic.Listen(quic.Config{ID: cfg.NodeID, Cluster: cluster, ListenAddr: cfg.QUICListen, Logger: log.With("component", "quic")})
	if err != nil {
		return nil, fmt.Errorf("quic listen %s: %w", cfg.QUICListen, err)
	}
	defer func() {
		if err != nil {
			s.ep.Close()
		}
	}()
	quicAddr, err := advertised(cfg.QUICAdvertise, cfg.Advertise, s.ep.Addr())
	if err != nil {
		return nil, fmt.Errorf("quic-advertise: %w", err)
	}
	mc := membership.LANConfig()
	if cfg.loopbackOnly() {
		mc = membership.LocalConfig()
	}
	host, port, err := splitHostPort(cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("listen: %w", err)
	}
	mc.Gossip.BindAddr, mc.Gossip.BindPort, mc.Gossip.AdvertisePort = host, port, port
	if cfg.Advertise != "" {
		ah, ap, err := splitHostPort(cfg.Advertise)
		if err != nil {
			return nil, fmt.Errorf("advertise: %w", err)
		}
		if net.ParseIP(ah) == nil {
			ips, err := net.LookupIP(ah)
			if err != nil || len(ips) == 0 {
				return nil, fmt.Errorf("advertise: resolve %s: %v", ah, err)
			}
			ah = ips[0].String()
		}
		mc.Gossip.AdvertiseAddr, mc.Gossip.AdvertisePort = ah, ap
	}
	mc.ID = cfg.NodeID
	mc.QUICAddr = quicAddr
	mc.Fingerprint = cfg.Fingerprint
	mc.Seeds = cfg.Seeds
	mc.GossipKey = cluster.GossipKey()
	mc.Endpoint = s.ep
	mc.MinMembers = cfg.MinPeers
	// Snapshot and Restore stay nil: deferred sync (rt_state_send/recv).
	mc.OnRoster = func(r membership.Roster) {
		for _, p := range r.Peers {
			if p.QUICAddr != "" && p.ID != cfg.NodeID {
				s.ep.AddPeer(p.ID, p.QUICAddr)
			}
		}
	}
	mc.Logger = log.With("component", "membership")
	if s.mem, err = membership.New(ctx, mc); err != nil {
		return nil, err
	}
	return s, nil
}

// boundaryCall runs membership.Boundary and installs its outcome.
func (s *session) boundaryCall(ctx context.Context, step membership.Step) (boundary, error) {
	s.opMu.Lock()
	defer s.opMu.Unlock()
	if s.leave.Load() {
		step.Leave = true
	}
	out, err := s.mem.Boundary(ctx, step)
	if err != nil {
		return boundary{}, err
	}
	b := boundary{Epoch: out.Epoch.Number, Step: out.Step, Size: len(out.Epoch.Members), Changed: out.Changed, Left: out.Left, Members: slices.Clone(out.Epoch.Members)}
	b.Rank = slices.Index(out.Epoch.Members, s.cfg.NodeID)
	switch {
	case len(out.Sync.Targets) == 0:
	case out.Sync.Source == s.cfg.NodeID:
		b.Role = roleSend
	case out.Sync.Has(s.cfg.NodeID):
		b.Role = roleRecv
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.last, s.sync = b, out.Sync
	if out.Left {
		s.g = nil
		return b, nil
	}
	if out.Changed || s.g == nil || s.g.Epoch() != out.Epoch.Number {
		s.ep.SetEpoch(out.Epoch.Number) // older epochs' stale chunks are refused from now on
		g, err := collective.New(ctx, collective.Config{Endpoint: s.ep, Members: out.Epoch.Members, Epoch: out.Epoch.Number, ChunkBytes: s.cfg.ChunkBytes, Timeout: s.cfg.OpTimeout})
		if err != nil {
			s.g = nil
			return b, fmt.Errorf("node %s: epoch %d: cannot reach the ring: %w", s.cfg.NodeID, out.Epoch.Number, err)
		}
		s.g = g
		b.Changed = true
		s.last.Changed = true
	}
	return b, nil
}

// sendState sends this node's state to the targets of the last boundary.
func (s *session) sendState(ctx context.Context, state []byte) error {
	s.opMu.Lock()
	defer s.opMu.Unlock()
	s.mu.Lock()
	b, o := s.last, s.sync
	s.mu.Unlock()
	if b.Role != roleSend {
		return fmt.Errorf("%w: node %s: state send in epoch %d: this node is not the sync source (source %q)", errInvalid, s.cfg.NodeID, b.Epoch, o.Source)
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.OpTimeout)
	defer cancel()
	return s.mem.SendState(ctx, b.Epoch, o.Targets, state)
}

// recvState receives the state the last boundary said this node needs.
func (s *session) recvState(ctx context.Context) ([]byte, error) {
	s.opMu.Lock()
	defer s.opMu.Unlock()
	s.mu.Lock()
	b, o := s.last, s.sync
	s.mu.Unlock()
	if b.Role != roleRecv {
		return nil, fmt.Errorf("%w: node %s: state receive in epoch %d: this node is not a sync target", errInvalid, s.cfg.NodeID, b.Epoch)
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.OpTimeout)
	defer cancel()
	return s.mem.RecvState(ctx, b.Epoch, o.Source)
}

// wireFor is the wire dtype of an all-reduce of a buffer of dtype dt: a
// 16-bit buffer travels in its own format (its precision is all there is),
// an fp32 buffer in the node's wire-dtype.
func (s *session) wireFor(dt dtype) collective.DType {
	if dt != fp32 {
		return collective.DType(dt)
	}
	return s.wire
}

// group returns the current epoch's group.
func (s *session) group(op string) (*collective.Group, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, fmt.Errorf("node %s: %s: the node is closed", s.cfg.NodeID, op)
	}
	if s.g == nil {
		return nil, fmt.Errorf("node %s: %s: no epoch yet (call rt_boundary first; last epoch %d)", s.cfg.NodeID, op, s.last.Epoch)
	}
	return s.g, nil
}

// requestLeave makes the next boundary announce a leave, and ends a wait
// for admission at once.
func (s *session) requestLeave() {
	s.leave.Store(true)
	s.mem.RequestLeave()
}

func (s *session) close() error {
	if s.cancel != nil {
		s.cancel() // ends a boundary still waiting
	}
	s.mu.Lock()
	s.closed = true
	s.g = nil
	s.mu.Unlock()
	if err := s.mem.Close(); err != nil {
		// Typically memberlist's leave broadcast timing out when the peers
		// are gone already: nothing the host can act on.
		s.log.Info("membership close", "err", err)
	}
	return s.ep.Close()
}

func splitHostPort(a string) (string, int, error) {
	h, p, err := net.SplitHostPort(a)
	if err != nil {
		return "", 0, err
	}
	port, err := strconv.Atoi(p)
	if err != nil || port < 0 || port > 65535 {
		return "", 0, fmt.Errorf("bad port in %q", a)
	}
	return h, port, nil
}

// advertised returns the QUIC address peers dial (the trainer's rule): the
// explicit one; else the gossip advertise host with the bound port; else
// the bound address, an unspecified host replaced by this host's first
// non-loopback IPv4 address.
func advertised(explicit, gossipAdvertise, bound string) (string, error) {
	if explicit != "" {
		return explicit, nil
	}
	h, p, err := net.SplitHostPort(bound)
	if err != nil {
		return "", err
	}
	if gossipAdvertise != "" {
		gh, _, err := net.SplitHostPort(gossipAdvertise)
		if err != nil {
			return "", err
		}
		return net.JoinHostPort(gh, p), nil
	}
	if ip := net.ParseIP(h); ip != nil && !ip.IsUnspecified() {
		return bound, nil
	}
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return "", err
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && !n.IP.IsLoopback() && n.IP.To4() != nil {
			return net.JoinHostPort(n.IP.String(), p), nil
		}
	}
	return net.JoinHostPort("127.0.0.1", p), nil
}
