package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

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

// session is one node: its QUIC endpoint, membership and the current
// epoch's collective group.
//
// State sync runs inside membership.Boundary (Config.Snapshot/Restore), and
// the host supplies its state only when asked: the Snapshot hook, which
// runs on the Boundary goroutine after the new epoch is committed, hands
// the epoch to rt_boundary (which returns role send) and waits for
// rt_state_send to give it the state; rt_state_send then waits for the
// Boundary to finish sending. Restore keeps the received state until
// rt_state_recv takes it. So the host serialises its state only on the one
// member that sends, and only when someone is behind.
type session struct {
	cfg settings
	log *slog.Logger
	// ctx bounds every call of this node; close cancels it, which ends a
	// boundary still waiting for admission.
	ctx    context.Context
	cancel context.CancelFunc
	ep     *quic.Endpoint
	mem    *membership.Member

	// opMu serialises boundary and state calls (one training loop per
	// node); the collective calls take mu only to read g.
	opMu    sync.Mutex
	pending chan boundaryResult // a Boundary waiting for rt_state_send
	want    chan uint64         // Snapshot asks for the state (epoch)
	give    chan []byte         // rt_state_send answers
	leave   atomic.Bool

	mu       sync.Mutex
	g        *collective.Group
	last     boundary
	restored []byte
	closed   bool
}

type boundaryResult struct {
	out membership.Outcome
	err error
}

func startSession(ctx context.Context, cfg settings) (_ *session, err error) {
	level := map[string]slog.Level{"debug": slog.LevelDebug, "info": slog.LevelInfo, "warn": slog.LevelWarn, "error": slog.LevelError}[cfg.LogLevel]
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	s := &session{cfg: cfg, log: log.With("node", cfg.NodeID), want: make(chan uint64), give: make(chan []byte)}
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
	mc.Snapshot = s.snapshot
	mc.Restore = s.restore
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

// snapshot runs on the Boundary goroutine: it asks the host for its state.
func (s *session) snapshot() ([]byte, error) {
	t := time.NewTimer(s.cfg.OpTimeout)
	defer t.Stop()
	select {
	case s.want <- s.mem.Epoch().Number:
	case <-s.ctx.Done():
		return nil, s.ctx.Err()
	case <-t.C:
		return nil, fmt.Errorf("node %s: state sync: the host did not reach rt_boundary within %s", s.cfg.NodeID, s.cfg.OpTimeout)
	}
	select {
	case b := <-s.give:
		return b, nil
	case <-s.ctx.Done():
		return nil, s.ctx.Err()
	case <-t.C:
		return nil, fmt.Errorf("node %s: state sync in epoch %d: the host did not call rt_state_send within %s", s.cfg.NodeID, s.mem.Epoch().Number, s.cfg.OpTimeout)
	}
}

func (s *session) restore(b []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.restored = slices.Clone(b)
	return nil
}

// boundaryCall runs membership.Boundary. It returns the outcome, or the
// epoch for which the host must send its state (pending is then set).
func (s *session) boundaryCall(ctx context.Context, step membership.Step) (boundary, error) {
	s.opMu.Lock()
	defer s.opMu.Unlock()
	if s.pending != nil {
		return boundary{}, fmt.Errorf("node %s: boundary: the previous boundary asked for the state; call rt_state_send first", s.cfg.NodeID)
	}
	if s.leave.Load() {
		step.Leave = true
	}
	ch := make(chan boundaryResult, 1)
	// Boundary blocks for as long as admission takes; only ctx (the
	// library's, cancelled by rt_close) bounds it.
	go func() {
		out, err := s.mem.Boundary(ctx, step)
		ch <- boundaryResult{out, err}
	}()
	select {
	case r := <-ch:
		return s.finish(ctx, r)
	case e := <-s.want:
		s.pending = ch
		ep := s.mem.Epoch() // Boundary is blocked in Snapshot: safe to read
		b := boundary{Epoch: e, Step: step.Done, Rank: slices.Index(ep.Members, s.cfg.NodeID), Size: len(ep.Members), Role: roleSend, Changed: true, Members: ep.Members}
		s.mu.Lock()
		s.last = b
		s.mu.Unlock()
		return b, nil
	}
}

// finish installs a Boundary outcome: the epoch's group, and the role.
func (s *session) finish(ctx context.Context, r boundaryResult) (boundary, error) {
	if r.err != nil {
		return boundary{}, r.err
	}
	out := r.out
	b := boundary{Epoch: out.Epoch.Number, Step: out.Step, Size: len(out.Epoch.Members), Changed: out.Changed, Left: out.Left, Members: slices.Clone(out.Epoch.Members)}
	b.Rank = slices.Index(out.Epoch.Members, s.cfg.NodeID)
	if out.Restored {
		b.Role = roleRecv
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if out.Left {
		s.g = nil
		s.last = b
		return b, nil
	}
	if out.Changed || s.g == nil || s.g.Epoch() != out.Epoch.Number {
		s.ep.SetEpoch(out.Epoch.Number) // older epochs' stale chunks are refused from now on
		g, err := collective.New(ctx, collective.Config{Endpoint: s.ep, Members: out.Epoch.Members, Epoch: out.Epoch.Number, ChunkBytes: s.cfg.ChunkBytes, Timeout: s.cfg.OpTimeout})
		if err != nil {
			s.g = nil
			return b, fmt.Errorf("node %s: epoch %d: cannot reach the ring: %w (report it as a failed step at the next boundary)", s.cfg.NodeID, out.Epoch.Number, err)
		}
		s.g = g
		b.Changed = true
	}
	s.last = b
	return b, nil
}

// sendState gives the state the pending boundary asked for and waits for
// the boundary to finish.
func (s *session) sendState(ctx context.Context, state []byte) (boundary, error) {
	s.opMu.Lock()
	defer s.opMu.Unlock()
	if s.pending == nil {
		return boundary{}, fmt.Errorf("node %s: state send: no peer is waiting for this node's state (the boundary's role is not send)", s.cfg.NodeID)
	}
	ch := s.pending
	s.pending = nil
	select {
	case s.give <- slices.Clone(state):
	case r := <-ch: // Snapshot timed out and Boundary ended
		_, err := s.finish(ctx, r)
		return boundary{}, errors.Join(fmt.Errorf("node %s: state send: the boundary ended first", s.cfg.NodeID), err)
	}
	return s.finish(ctx, <-ch)
}

// recvState returns the state received in the last boundary.
func (s *session) recvState() ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b := s.restored
	s.restored = nil
	if b == nil {
		return nil, fmt.Errorf("node %s: state receive: no state was received in the last boundary (epoch %d; its role is not recv)", s.cfg.NodeID, s.last.Epoch)
	}
	return b, nil
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
	s.opMu.Lock()
	if s.pending != nil {
		<-s.pending // its Snapshot sees ctx end
		s.pending = nil
	}
	s.opMu.Unlock()
	s.mu.Lock()
	s.closed = true
	s.g = nil
	s.mu.Unlock()
	return errors.Join(s.mem.Close(), s.ep.Close())
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
