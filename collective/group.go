// Package collective is ringtrain's public collective API: a Group of peers
// in one membership epoch, with ring all-reduce (blocking and asynchronous),
// broadcast, all-gather and barrier over any transport.Endpoint.
//
// Invariants:
//   - Every member calls the same operations in the same order; each call
//     takes the next operation number of the Group, and the pair (epoch,
//     operation number) tags its messages, so concurrent operations (several
//     asynchronous all-reduces in flight) never mix their chunks.
//   - An all-reduce split into Config.Lanes parts takes that many
//     consecutive operation numbers at the call; whether it splits depends
//     only on its length, the ring size and the configuration, so every
//     member splits alike, and each part is reduced as a whole operation
//     would be: replicas stay bitwise identical.
//   - Every operation has a deadline: the caller's, or Config.Timeout.
//   - A failed operation aborts its tag toward both ring neighbours, so every
//     member returns an error (naming the failing peer in its chain of
//     causes) instead of waiting; a Group whose operation failed should be
//     replaced by the next epoch's Group.
//   - After warm-up an operation allocates O(1) memory plus pooled chunk
//     buffers, never O(buffer).
//   - A Bucketer (the one bucketed all-reduce: the trainer's and the
//     bindings') checks on its first round in each Group that every member
//     plans the same buckets, and fails that round on all of them with
//     ErrPlanMismatch before any bucket runs if not.
package collective

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/ringtrain/ringtrain/ring"
	"github.com/ringtrain/ringtrain/transport"
)

// Op is a reduction operator.
type Op int

// Reduction operators.
const (
	Sum Op = iota
	Avg
	Max
	Min
)

func (o Op) String() string {
	switch o {
	case Sum:
		return "sum"
	case Avg:
		return "avg"
	case Max:
		return "max"
	case Min:
		return "min"
	}
	return fmt.Sprintf("op(%d)", int(o))
}

// Defaults for Config's zero values.
const (
	DefaultChunkBytes = 256 << 10
	DefaultTimeout    = 2 * time.Minute
)

// Config describes one member's view of a group.
type Config struct {
	Endpoint transport.Endpoint
	// Members is the agreed ring order of this epoch (see ring.Order); it
	// must contain Endpoint.ID() and be identical on every member.
	Members []string
	Epoch   uint64
	// ChunkBytes is the pipelining unit: each ring segment travels in chunks
	// of at most this many bytes. Default DefaultChunkBytes.
	ChunkBytes int
	// Timeout is the deadline of an operation whose ctx has none.
	// Default DefaultTimeout.
	Timeout time.Duration
	// Wire is the wire dtype of AllReduce and AllReduceAsync (default
	// Float32); AllReduceWire chooses per call. Broadcast and AllGather
	// always send float32.
	Wire DType
	// Lanes, if above 1, splits an all-reduce of at least
	// Lanes·Size()·chunk elements into Lanes contiguous parts that run at
	// once as all-reduces of their own, with consecutive operation
	// numbers: over a transport with that many connections per peer
	// (transport/tcp's Config.Lanes, which puts operation Op on connection
	// Op mod Lanes) one ring step then seals, sends and reduces on Lanes
	// cores. Smaller all-reduces run whole. Like ChunkBytes and Wire it
	// must be the same on every member. Default 1.
	Lanes int
}

// Group is one member's handle on a group of peers in one epoch. It is safe
// for concurrent use, as long as all members issue operations in the same
// order.
type Group struct {
	cfg        Config
	rank       int
	prev, next transport.Conn
	codecs     [Float16 + 1]*ring.Codec // by wire dtype; nil for Float32

	mu    sync.Mutex
	seq   uint64
	sched map[schedKey]*ring.Schedule

	scratch [Float16 + 1]sync.Pool // *[]float32 of ≤ chunk(d) elements, by wire dtype
	wbufs   wirePool               // encoded chunks in flight
}

// wirePool lends the buffers of encoded chunks (ring.BufPool). A buffer's
// capacity is its first chunk's length rounded up to a power of two, at most
// ChunkBytes (the most any wire dtype's chunk takes): a short last chunk's
// buffer serves the chunks of the same operation and of similar ones, while
// a small operation on a group with huge chunks (--chunk-bytes 64MiB) takes
// only about what it sends, not ChunkBytes for every chunk in flight. A
// pooled buffer too small for a request is dropped and a larger one made.
type wirePool struct {
	chunkBytes int
	p          sync.Pool // *[]byte
}

func (w *wirePool) Get(n int) *[]byte {
	if b, ok := w.p.Get().(*[]byte); ok && cap(*b) >= n {
		*b = (*b)[:n]
		return b
	}
	b := make([]byte, n, wireCap(n, w.chunkBytes))
	return &b
}

// wireCap is the capacity of a new wire buffer for an n-byte chunk: n
// rounded up to a power of two, but at most chunkBytes (and never below n).
func wireCap(n, chunkBytes int) int {
	c := 1
	for c < n {
		c <<= 1
	}
	return max(n, min(c, chunkBytes))
}

func (w *wirePool) Put(b *[]byte) { w.p.Put(b) }

type schedKey struct {
	kind    byte
	wire    DType
	n, root int
}

// maxLanes bounds Config.Lanes (as transport/tcp bounds its lanes).
const maxLanes = 16

// maxSchedules bounds the schedule cache; a training step reuses a few sizes.
const maxSchedules = 256

// New joins the group: it finds this member's rank and opens the
// connections to its ring neighbours.
func New(ctx context.Context, cfg Config) (*Group, error) {
	if cfg.Endpoint == nil {
		return nil, errors.New("collective: Config.Endpoint is nil")
	}
	if cfg.ChunkBytes <= 0 {
		cfg.ChunkBytes = DefaultChunkBytes
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.Lanes <= 0 {
		cfg.Lanes = 1
	}
	if cfg.Lanes > maxLanes {
		return nil, fmt.Errorf("collective: epoch %d: %d lanes, at most %d", cfg.Epoch, cfg.Lanes, maxLanes)
	}
	if !cfg.Wire.valid() {
		return nil, fmt.Errorf("collective: epoch %d: unknown wire dtype %v", cfg.Epoch, cfg.Wire)
	}
	cfg.Members = slices.Clone(cfg.Members)
	self := cfg.Endpoint.ID()
	rank := slices.Index(cfg.Members, self)
	if rank < 0 {
		return nil, fmt.Errorf("collective: epoch %d: %s is not among the members %v", cfg.Epoch, self, cfg.Members)
	}
	if len(slices.Compact(slices.Sorted(slices.Values(cfg.Members)))) != len(cfg.Members) {
		return nil, fmt.Errorf("collective: epoch %d: duplicate members in %v", cfg.Epoch, cfg.Members)
	}
	g := &Group{cfg: cfg, rank: rank, sched: make(map[schedKey]*ring.Schedule)}
	g.wbufs.chunkBytes = cfg.ChunkBytes
	for d := range g.codecs {
		g.codecs[d] = DType(d).codec()
	}
	if n := len(cfg.Members); n > 1 {
		ctx, cancel := g.opCtx(ctx)
		defer cancel()
		var err error
		if g.next, err = cfg.Endpoint.Conn(ctx, cfg.Members[(rank+1)%n]); err != nil {
			return nil, fmt.Errorf("collective: epoch %d: connect to next peer: %w", cfg.Epoch, err)
		}
		if g.prev, err = cfg.Endpoint.Conn(ctx, cfg.Members[(rank+n-1)%n]); err != nil {
			return nil, fmt.Errorf("collective: epoch %d: connect to previous peer: %w", cfg.Epoch, err)
		}
	}
	return g, nil
}

// Rank is this member's position in the ring.
func (g *Group) Rank() int { return g.rank }

// Size is the number of members.
func (g *Group) Size() int { return len(g.cfg.Members) }

// Epoch is the membership epoch the group belongs to.
func (g *Group) Epoch() uint64 { return g.cfg.Epoch }

// Members returns a copy of the ring order.
func (g *Group) Members() []string { return slices.Clone(g.cfg.Members) }

// opCtx applies the default deadline when ctx has none.
func (g *Group) opCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, g.cfg.Timeout)
}

// next operation number (the order of calls defines it on every member).
func (g *Group) nextSeq() uint64 { return g.nextSeqs(1) }

// nextSeqs takes k consecutive operation numbers and returns the first.
func (g *Group) nextSeqs(k int) uint64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	s := g.seq
	g.seq += uint64(k)
	return s
}

// schedule returns the cached schedule for key, building it with mk.
func (g *Group) schedule(k schedKey, mk func() *ring.Schedule) *ring.Schedule {
	g.mu.Lock()
	defer g.mu.Unlock()
	if s, ok := g.sched[k]; ok {
		return s
	}
	if len(g.sched) >= maxSchedules {
		clear(g.sched)
	}
	s := mk()
	g.sched[k] = s
	return s
}

// chunk is the pipelining unit in elements for wire dtype d: ChunkBytes
// of wire bytes.
func (g *Group) chunk(d DType) int { return max(g.cfg.ChunkBytes/d.Size(), 1) }

// getScratch returns a pooled float32 buffer of at least need elements
// (need ≤ one chunk: pooled buffers never exceed it, and a small operation
// on a group with huge chunks allocates only what it uses).
func (g *Group) getScratch(d DType, need int) *[]float32 {
	if p, ok := g.scratch[d].Get().(*[]float32); ok {
		if cap(*p) >= need {
			*p = (*p)[:need]
			return p
		}
	}
	b := make([]float32, need)
	return &b
}

// run executes one scheduled operation with its own tag and deadline.
func (g *Group) run(ctx context.Context, name string, seq uint64, buf []float32, s *ring.Schedule, op Op, wire DType) error {
	ctx, cancel := g.opCtx(ctx)
	defer cancel()
	e := ring.Exec{Prev: g.prev, Next: g.next, Tag: transport.Tag{Epoch: g.cfg.Epoch, Op: seq}, Buf: buf, Sched: s,
		Wire: g.codecs[wire], Bufs: &g.wbufs}
	switch op {
	case Sum:
		e.Reduce, e.SumDivisor = ring.Sum, 1
	case Avg:
		size := float32(g.Size())
		e.Reduce, e.SumDivisor = ring.Sum, size
		e.Final = func(dst []float32) { ring.Div(dst, size) }
	case Max:
		e.Reduce = ring.Max
	case Min:
		e.Reduce = ring.Min
	}
	longest := min(g.chunk(wire), len(buf)) // no chunk is longer
	if len(s.Recvs) > 0 && e.Reduce != nil {
		sp := g.getScratch(wire, longest)
		e.Scratch = *sp
		defer g.scratch[wire].Put(sp)
	}
	if err := ring.Run(ctx, &e); err != nil {
		return g.wrap(name, seq, err)
	}
	return nil
}

func (g *Group) wrap(name string, seq uint64, err error) error {
	return fmt.Errorf("collective: %s on %s (rank %d of %d, epoch %d, op %d): %w",
		name, g.cfg.Endpoint.ID(), g.rank, g.Size(), g.cfg.Epoch, seq, err)
}

// reject fails an operation whose arguments are wrong before it starts, and
// aborts its tag toward both neighbours so that they fail at once instead of
// waiting for their deadline.
func (g *Group) reject(ctx context.Context, name string, seq uint64, cause error) error {
	err := g.wrap(name, seq, cause)
	tag := transport.Tag{Epoch: g.cfg.Epoch, Op: seq}
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	for _, c := range []transport.Conn{g.prev, g.next} {
		if c != nil {
			_ = c.Abort(actx, tag, err) // best effort; err is what this member reports
		}
	}
	return err
}
