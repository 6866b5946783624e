package membership_test

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/ringtrain/ringtrain/collective"
	"github.com/ringtrain/ringtrain/membership"
	"github.com/ringtrain/ringtrain/transport/mem"
)

func testKey() []byte { return []byte("0123456789abcdef0123456789abcdef") } // 32 bytes

const (
	paramLen    = 64
	testTimeout = 90 * time.Second
)

// partition splits gossip and the mem network into groups; nil groups
// means fully connected. It implements the gossip side by filtering a
// memberlist NetTransport per node.
type partition struct {
	mu     sync.Mutex
	addrOf map[string]string // gossip address → node ID
	group  map[string]int    // node ID → group, when partitioned
}

func (p *partition) blocked(self, addr string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.group == nil {
		return false
	}
	peer, ok := p.addrOf[addr]
	if !ok {
		return false
	}
	return p.group[self] != p.group[peer]
}

// filterTransport drops gossip packets and refuses streams across the
// partition, in both directions, like a cut network.
type filterTransport struct {
	*memberlist.NetTransport
	self    string
	p       *partition
	packets chan *memberlist.Packet
	done    chan struct{} // closed by Shutdown
}

// Shutdown stops the inner transport first: its UDP listener may be
// blocked handing a packet to the forwarder, which must keep draining.
func (f *filterTransport) Shutdown() error {
	err := f.NetTransport.Shutdown()
	close(f.done)
	return err
}

func newFilterTransport(t testing.TB, self string, p *partition) *filterTransport {
	// Port 0 picks a free TCP port and then binds UDP to the same number,
	// which can be taken: retry like memberlist does for its own transport.
	var (
		nt  *memberlist.NetTransport
		err error
	)
	for range 10 {
		nt, err = memberlist.NewNetTransport(&memberlist.NetTransportConfig{
			BindAddrs: []string{"127.0.0.1"},
			Logger:    slog.NewLogLogger(slog.DiscardHandler, slog.LevelDebug),
		})
		if err == nil {
			break
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	f := &filterTransport{NetTransport: nt, self: self, p: p, packets: make(chan *memberlist.Packet, 256), done: make(chan struct{})}
	p.mu.Lock()
	p.addrOf[fmt.Sprintf("127.0.0.1:%d", nt.GetAutoBindPort())] = self
	p.mu.Unlock()
	go func() {
		for {
			select {
			case <-f.done:
				return
			case pk := <-nt.PacketCh():
				if p.blocked(self, pk.From.String()) {
					continue
				}
				select {
				case f.packets <- pk:
				case <-f.done:
					return
				}
			}
		}
	}()
	return f
}

func (f *filterTransport) PacketCh() <-chan *memberlist.Packet { return f.packets }

func (f *filterTransport) WriteTo(b []byte, addr string) (time.Time, error) {
	if f.p.blocked(f.self, addr) {
		return time.Now(), nil
	}
	return f.NetTransport.WriteTo(b, addr)
}

func (f *filterTransport) WriteToAddress(b []byte, a memberlist.Address) (time.Time, error) {
	return f.WriteTo(b, a.Addr)
}

func (f *filterTransport) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	if f.p.blocked(f.self, addr) {
		return nil, fmt.Errorf("partitioned from %s", addr)
	}
	return f.NetTransport.DialTimeout(addr, timeout)
}

func (f *filterTransport) DialAddressTimeout(a memberlist.Address, timeout time.Duration) (net.Conn, error) {
	return f.DialTimeout(a.Addr, timeout)
}

// stepRec is one step a node ran.
type stepRec struct {
	epoch uint64
	size  int
	err   error
}

// node is one emulated trainer: its state is a parameter vector and a
// step counter; a step all-reduces (Sum) a fixed integer gradient and adds
// it, so every result is exact.
type node struct {
	id string
	m  *membership.Member

	mu       sync.Mutex
	params   []float32
	done     uint64
	hasState bool
	synced   int // deferred state transfers received
	steps    []stepRec
	epochs   []membership.Epoch
	epochAt  []time.Time // when each epoch was returned by Boundary
	crashAt2 time.Time   // when crash was called

	leaveAt atomic.Uint64 // leave at the boundary after this many steps
	crashAt atomic.Uint64 // crash during the step after this many steps
	hang    atomic.Bool   // crashAt hangs instead: gossip stops, the endpoint stays open
	exited  chan struct{}
	runErr  error
	cancel  context.CancelFunc
	crashed atomic.Bool
}

func (n *node) snapshot() ([]byte, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	b := binary.LittleEndian.AppendUint64(nil, n.done)
	for _, v := range n.params {
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(v))
	}
	return b, nil
}

func (n *node) restore(b []byte) error {
	if len(b) != 8+4*paramLen {
		return fmt.Errorf("state of %d bytes, want %d", len(b), 8+4*paramLen)
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	n.done = binary.LittleEndian.Uint64(b)
	for i := range n.params {
		n.params[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[8+4*i:]))
	}
	n.hasState = true
	return nil
}

type cluster struct {
	t      testing.TB
	net    *mem.Network
	part   *partition
	seeds  []string
	stopAt atomic.Uint64 // every node stops at the boundary after this many steps
	opTime time.Duration // collective timeout
	// deferred: nodes run without Snapshot/Restore and transfer state
	// themselves (SendState/RecvState) after Boundary.
	deferred bool
	cfg      func(*membership.Config)

	mu    sync.Mutex
	nodes map[string]*node
}

func newCluster(t testing.TB) *cluster {
	c := &cluster{t: t, net: mem.NewNetwork(), part: &partition{addrOf: map[string]string{}}, nodes: map[string]*node{}, opTime: 2 * time.Second}
	c.stopAt.Store(math.MaxUint64)
	return c
}

func testLogger() *slog.Logger {
	if os.Getenv("MEMBERSHIP_DEBUG") == "" {
		return nil
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// config returns a node's configuration with the test defaults.
func (c *cluster) config(id string, ep *mem.Endpoint) membership.Config {
	cfg := membership.LocalConfig()
	cfg.ID = id
	cfg.Fingerprint = "test-model-v1"
	cfg.GossipKey = testKey()
	cfg.Endpoint = ep
	cfg.Seeds = c.seeds
	cfg.Logger = testLogger()
	cfg.ChunkBytes = 64 // the 264-byte test state travels in 5 chunks
	g := *cfg.Gossip
	g.Transport = newFilterTransport(c.t, id, c.part)
	cfg.Gossip = &g
	if c.cfg != nil {
		c.cfg(&cfg)
	}
	return cfg
}

// add starts a node (gossip only; run starts its training loop).
func (c *cluster) add(ctx context.Context, id string) *node {
	c.t.Helper()
	ep, err := c.net.Endpoint(id)
	if err != nil {
		c.t.Fatal(err)
	}
	n := &node{id: id, params: make([]float32, paramLen), exited: make(chan struct{})}
	cfg := c.config(id, ep)
	if !c.deferred {
		cfg.Snapshot, cfg.Restore = n.snapshot, n.restore
	}
	m, err := membership.New(ctx, cfg)
	if err != nil {
		c.t.Fatalf("start %s: %v", id, err)
	}
	n.m = m
	if len(c.seeds) == 0 {
		c.seeds = []string{m.GossipAddr()}
	}
	c.mu.Lock()
	c.nodes[id] = n
	c.mu.Unlock()
	c.t.Cleanup(func() {
		if !n.crashed.Load() {
			n.m.Crash()
		}
	})
	return n
}

// run starts n's training loop.
func (c *cluster) run(n *node) {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	n.cancel = cancel
	go func() {
		defer close(n.exited)
		defer cancel()
		n.runErr = c.loop(ctx, n)
	}()
	c.t.Cleanup(func() { cancel(); <-n.exited })
}

func grad(j int) float32 { return float32(j%5 + 1) }

func (c *cluster) loop(ctx context.Context, n *node) error {
	var (
		g    *collective.Group
		step membership.Step
	)
	step.NoState = true
	for {
		n.mu.Lock()
		step.Done = n.done
		n.mu.Unlock()
		if n.leaveAt.Load() == step.Done && step.Done > 0 {
			step.Leave = true
		}
		out, err := n.m.Boundary(ctx, step)
		if err != nil {
			return err
		}
		if out.Left {
			return n.m.Close()
		}
		step = membership.Step{}
		if c.deferred && out.Changed {
			if err := c.deferredSync(ctx, n, out); err != nil {
				// Not in sync: report a failed step in the new epoch.
				n.mu.Lock()
				n.steps = append(n.steps, stepRec{epoch: out.Epoch.Number, size: len(out.Epoch.Members), err: err})
				n.mu.Unlock()
				step.Err = err
				continue
			}
		}
		if out.Changed {
			g, err = collective.New(ctx, collective.Config{Endpoint: n.m.Config().Endpoint, Members: out.Epoch.Members, Epoch: out.Epoch.Number, Timeout: c.opTime})
			if err != nil {
				return err
			}
			n.mu.Lock()
			n.epochs = append(n.epochs, out.Epoch)
			n.epochAt = append(n.epochAt, time.Now())
			n.hasState = true
			n.mu.Unlock()
		}
		n.mu.Lock()
		done := n.done
		n.mu.Unlock()
		if done >= c.stopAt.Load() {
			return nil
		}
		if ca := n.crashAt.Load(); ca != 0 && ca == done && n.hang.Load() {
			// A hung process: it stops answering gossip and never
			// joins the collective, but its connections stay open, so
			// only timeouts and gossip can tell.
			n.mu.Lock()
			n.crashAt2 = time.Now()
			n.mu.Unlock()
			n.crashed.Store(true)
			n.m.Crash()
			<-ctx.Done()
			return errCrashed
		}
		if ca := n.crashAt.Load(); ca != 0 && ca == done {
			// Slow this node's links so the crash lands mid all-reduce.
			for _, p := range out.Epoch.Members {
				if p != n.id {
					c.net.SetLink(n.id, p, mem.Link{Delay: 40 * time.Millisecond})
				}
			}
			time.AfterFunc(15*time.Millisecond, func() { c.crash(n) })
		}
		time.Sleep(2 * time.Millisecond) // emulated compute
		buf := make([]float32, paramLen)
		for j := range buf {
			buf[j] = grad(j)
		}
		opCtx, opCancel := context.WithTimeout(ctx, c.opTime)
		err = g.AllReduce(opCtx, buf, collective.Sum)
		opCancel()
		if err == nil {
			for j, v := range buf {
				if want := float32(g.Size()) * grad(j); v != want {
					err = fmt.Errorf("%s step %d: element %d = %v, want %v", n.id, done, j, v, want)
					n.mu.Lock()
					n.steps = append(n.steps, stepRec{epoch: g.Epoch(), size: g.Size(), err: err})
					n.mu.Unlock()
					return err
				}
			}
			n.mu.Lock()
			for j, v := range buf {
				n.params[j] += v
			}
			n.done++
			n.mu.Unlock()
		}
		n.mu.Lock()
		n.steps = append(n.steps, stepRec{epoch: g.Epoch(), size: g.Size(), err: err})
		n.mu.Unlock()
		if n.crashed.Load() {
			return errCrashed
		}
		step.Err = err
	}
}

var errCrashed = errors.New("crashed")

// deferredSync runs the state transfer Boundary prescribed in deferred mode.
func (c *cluster) deferredSync(ctx context.Context, n *node, out membership.Outcome) error {
	switch {
	case out.Sync.Source == n.id:
		state, _ := n.snapshot()
		return n.m.SendState(ctx, out.Epoch.Number, out.Sync.Targets, state)
	case out.Sync.Has(n.id):
		state, err := n.m.RecvState(ctx, out.Epoch.Number, out.Sync.Source)
		if err != nil {
			return err
		}
		if err := n.restore(state); err != nil {
			return err
		}
		n.mu.Lock()
		n.synced++
		done := n.done
		n.mu.Unlock()
		if done != out.Step {
			return fmt.Errorf("%s: restored step %d, Outcome.Step %d", n.id, done, out.Step)
		}
	}
	return nil
}

// crash makes n vanish: gossip stops without leaving and its endpoint dies.
func (c *cluster) crash(n *node) {
	n.mu.Lock()
	n.crashAt2 = time.Now()
	n.mu.Unlock()
	if n.crashed.Swap(true) {
		return
	}
	c.net.Crash(n.id)
	n.m.Crash()
}

// waitDone waits until every listed node finished its loop.
func (c *cluster) waitDone(nodes ...*node) {
	c.t.Helper()
	for _, n := range nodes {
		select {
		case <-n.exited:
		case <-time.After(testTimeout):
			c.t.Fatalf("%s did not finish", n.id)
		}
	}
}

// maxDone returns the highest step count among nodes.
func maxDone(nodes ...*node) uint64 {
	var d uint64
	for _, n := range nodes {
		n.mu.Lock()
		d = max(d, n.done)
		n.mu.Unlock()
	}
	return d
}

// waitFor polls cond (a condition on other goroutines' progress) until it
// holds or the deadline passes.
func waitFor(t testing.TB, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// lastEpoch returns the last epoch n ran in.
func (n *node) lastEpoch() membership.Epoch {
	n.mu.Lock()
	defer n.mu.Unlock()
	if len(n.epochs) == 0 {
		return membership.Epoch{}
	}
	return n.epochs[len(n.epochs)-1]
}

// checkSame fails unless all nodes hold identical state.
func checkSame(t *testing.T, nodes ...*node) {
	t.Helper()
	ref, _ := nodes[0].snapshot()
	for _, n := range nodes[1:] {
		s, _ := n.snapshot()
		if !slices.Equal(s, ref) {
			t.Errorf("%s state differs from %s (steps %d vs %d)", n.id, nodes[0].id, binary.LittleEndian.Uint64(s), binary.LittleEndian.Uint64(ref))
		}
	}
}

// stopSoon makes every node stop a few steps after the current maximum.
func (c *cluster) stopSoon(nodes []*node, extra uint64) uint64 {
	at := maxDone(nodes...) + extra
	c.stopAt.Store(at)
	return at
}

// firstEpochAt returns when n first ran an epoch satisfying cond.
func (n *node) firstEpochAt(cond func(membership.Epoch) bool) (time.Time, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for i, e := range n.epochs {
		if cond(e) {
			return n.epochAt[i], true
		}
	}
	return time.Time{}, false
}

// latest returns the latest time at which every node ran an epoch
// satisfying cond, measured from start.
func latest(t *testing.T, start time.Time, nodes []*node, cond func(membership.Epoch) bool) time.Duration {
	t.Helper()
	var d time.Duration
	for _, n := range nodes {
		at, ok := n.firstEpochAt(cond)
		if !ok {
			t.Fatalf("%s never ran such an epoch", n.id)
		}
		d = max(d, at.Sub(start))
	}
	return d
}

// dumpSteps logs the nodes' recent history (used when a test failed).
func dumpSteps(t *testing.T, nodes ...*node) {
	for _, n := range nodes {
		s := n.stepsCopy()
		if len(s) > 8 {
			s = s[len(s)-8:]
		}
		n.mu.Lock()
		epochs := slices.Clone(n.epochs)
		n.mu.Unlock()
		t.Logf("%s done=%d epochs=%v last steps=%+v", n.id, maxDone(n), epochs, s)
	}
}
