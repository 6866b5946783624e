package allreduce

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/ringtrain/ringtrain/bench/ps"
	"github.com/ringtrain/ringtrain/collective"
	"github.com/ringtrain/ringtrain/transport"
)

// participant is one peer's part in a measured collective: ringtrain ranks,
// parameter-server workers and servers all follow the same schedule of
// rounds (prepare, barrier, timed reduce) so one loop measures them all.
type participant interface {
	// prepare (re)fills the input for a count-element all-reduce; untimed.
	prepare(count int)
	barrier(ctx context.Context) error
	reduce(ctx context.Context) error
	// check verifies the last round's result exactly.
	check() error
}

// fillInput sets the input of rank: element i is rank+1 + i%5, so the sum
// over n ranks is n(n+1)/2 + n·(i%5), exact in float32 for the n we run.
func fillInput(buf []float32, rank int) {
	for i := range buf {
		buf[i] = float32(rank + 1 + i%5)
	}
}

// checkSum verifies an all-reduced (Sum) buffer of n ranks' fillInput:
// exactly over a float32 wire, and within the wire dtype's error bound
// (collective.DType.ErrorBound: the inputs are positive, so Σ|x| is the
// sum) over a 16-bit one.
func checkSum(buf []float32, n int, wire collective.DType) error {
	gamma, tau := 0.0, 0.0
	if wire != collective.Float32 {
		gamma, tau = wire.ErrorBound(n)
	}
	for i, got := range buf {
		want := float64(n*(n+1)/2 + n*(i%5))
		if d := math.Abs(float64(got) - want); d > gamma*want+tau || (wire == collective.Float32 && got != float32(want)) {
			return fmt.Errorf("element %d = %v after all-reduce over %d peers (%v wire), want %v", i, got, n, wire, want)
		}
	}
	return nil
}

// measureSpec is the schedule every participant of a run follows.
type measureSpec struct {
	Sizes     []int64       `json:"sizes"`
	Warmup    int           `json:"warmup"`
	Iters     int           `json:"iters"`
	OpTimeout time.Duration `json:"op_timeout"`
}

// measureResult is one participant's measurements.
type measureResult struct {
	Times [][]float64 `json:"times_s"` // [size][timed iteration]
	CPU   []float64   `json:"cpu_s"`   // [size] CPU over the timed iterations; nil if not measured
}

// measure runs the schedule. cpu, when not nil, reads the CPU time to
// attribute to this participant.
func measure(ctx context.Context, p participant, spec measureSpec, cpu func() float64) (measureResult, error) {
	var res measureResult
	for _, size := range spec.Sizes {
		count := int(size / 4)
		var times []float64
		var c0 float64
		for r := 0; r < spec.Warmup+spec.Iters; r++ {
			if r == spec.Warmup && cpu != nil {
				c0 = cpu()
			}
			p.prepare(count)
			opCtx, cancel := context.WithTimeout(ctx, spec.OpTimeout)
			if err := p.barrier(opCtx); err != nil {
				cancel()
				return res, fmt.Errorf("barrier before round %d of %d B: %w", r, size, err)
			}
			t0 := time.Now()
			err := p.reduce(opCtx)
			dt := time.Since(t0).Seconds()
			cancel()
			if err != nil {
				return res, fmt.Errorf("all-reduce round %d of %d B: %w", r, size, err)
			}
			if r >= spec.Warmup {
				times = append(times, dt)
			}
		}
		if cpu != nil {
			res.CPU = append(res.CPU, cpu()-c0)
		}
		if err := p.check(); err != nil {
			return res, fmt.Errorf("%d B: %w", size, err)
		}
		res.Times = append(res.Times, times)
	}
	return res, nil
}

// ringPeer is one ringtrain rank. With bucketBytes > 0 its buffer is cut
// into segments of that size, reduced through a collective.Bucketer (built
// once per buffer size, as the trainer builds one for its arena): a round
// marks every segment ready in order and waits; otherwise one AllReduce of
// the buffer on the group's wire dtype.
type ringPeer struct {
	g           *collective.Group
	rank        int
	wire        collective.DType
	bucketBytes int
	buf         []float32
	b           *collective.Bucketer
	segs        int
	err         error // from building the Bucketer, reported by reduce
}

func (p *ringPeer) prepare(count int) {
	if p.buf == nil || len(p.buf) != count {
		p.buf = make([]float32, count)
		p.b, p.err = nil, nil
		if p.bucketBytes > 0 {
			p.b, p.segs, p.err = newBucketer(p.buf, p.bucketBytes, p.wire)
		}
	}
	fillInput(p.buf, p.rank)
}

// newBucketer cuts buf into segments of bucketBytes and plans buckets of
// the same size over them.
func newBucketer(buf []float32, bucketBytes int, wire collective.DType) (*collective.Bucketer, int, error) {
	per := max(bucketBytes/4, 1)
	var segs []collective.Segment
	for off := 0; off < len(buf); off += per {
		segs = append(segs, collective.Segment{Off: off, Len: min(per, len(buf)-off)})
	}
	b, err := collective.NewBucketer(buf, segs, collective.BucketConfig{BucketBytes: bucketBytes, Op: collective.Sum, Wire: wire})
	return b, len(segs), err
}

func (p *ringPeer) barrier(ctx context.Context) error { return p.g.Barrier(ctx) }
func (p *ringPeer) reduce(ctx context.Context) error {
	if p.err != nil {
		return p.err
	}
	if p.b == nil {
		return p.g.AllReduce(ctx, p.buf, collective.Sum)
	}
	r := p.b.Start(ctx, p.g)
	for i := range p.segs {
		if err := r.Ready(i); err != nil {
			return errors.Join(err, r.Wait(ctx))
		}
	}
	return r.Wait(ctx)
}
func (p *ringPeer) check() error { return checkSum(p.buf, p.g.Size(), p.wire) }

// psWorker is one parameter-server worker.
type psWorker struct {
	w       *ps.Worker
	rank, n int
	buf     []float32
}

func (p *psWorker) prepare(count int) {
	p.buf = resize(p.buf, count)
	fillInput(p.buf, p.rank)
}
func (p *psWorker) barrier(ctx context.Context) error { return p.w.Barrier(ctx) }
func (p *psWorker) reduce(ctx context.Context) error  { return p.w.AllReduce(ctx, p.buf) }
func (p *psWorker) check() error                      { return checkSum(p.buf, p.n, collective.Float32) }

// psServer is one parameter server.
type psServer struct {
	s     *ps.Server
	count int
}

func (p *psServer) prepare(count int)                 { p.count = count }
func (p *psServer) barrier(ctx context.Context) error { return p.s.Barrier(ctx) }
func (p *psServer) reduce(ctx context.Context) error  { return p.s.AllReduce(ctx, p.count, ps.Sum) }
func (p *psServer) check() error                      { return nil }

func resize(buf []float32, n int) []float32 {
	if cap(buf) < n {
		return make([]float32, n)
	}
	return buf[:n]
}

// roleSpec places one participant in a job.
type roleSpec struct {
	System  string   `json:"system"` // ringtrain or ps
	Server  bool     `json:"server,omitempty"`
	Index   int      `json:"index"` // rank, or server index
	Workers []string `json:"workers"`
	Servers []string `json:"servers,omitempty"`
	Chunk   int      `json:"chunk"` // message/chunk bytes
	// Wire and BucketBytes are ringtrain's wire dtype ("fp32" if empty)
	// and bucket size (0: one AllReduce).
	Wire        string `json:"wire,omitempty"`
	BucketBytes int    `json:"bucket_bytes,omitempty"`
	// Lanes is collective.Config.Lanes and the worker's tcp.Config.Lanes.
	Lanes int `json:"lanes,omitempty"`
}

// name is the role's system as rows name it ("ringtrain-bf16",
// "ringtrain-bf16-lanes2").
func (r roleSpec) name() string {
	if r.System != "ringtrain" {
		return r.System
	}
	n := r.System
	if r.Wire != "" && r.Wire != collective.Float32.String() {
		n += "-" + r.Wire
	}
	if r.Lanes > 1 {
		n += fmt.Sprintf("-lanes%d", r.Lanes)
	}
	return n
}

// newParticipant joins the job described by r through ep.
func newParticipant(ctx context.Context, ep transport.Endpoint, r roleSpec, opTimeout time.Duration) (participant, error) {
	switch {
	case r.System == "ringtrain":
		wire := collective.Float32
		if r.Wire != "" {
			var err error
			if wire, err = collective.ParseDType(r.Wire); err != nil {
				return nil, err
			}
		}
		g, err := collective.New(ctx, collective.Config{Endpoint: ep, Members: r.Workers, Epoch: 1, ChunkBytes: r.Chunk, Timeout: opTimeout, Wire: wire, Lanes: r.Lanes})
		if err != nil {
			return nil, err
		}
		return &ringPeer{g: g, rank: r.Index, wire: wire, bucketBytes: r.BucketBytes}, nil
	case r.System == "ps" && r.Server:
		s, err := ps.NewServer(ctx, ep, ps.Config{Workers: r.Workers, Servers: r.Servers, Epoch: 1, ChunkBytes: r.Chunk}, r.Index)
		if err != nil {
			return nil, err
		}
		return &psServer{s: s}, nil
	case r.System == "ps":
		w, err := ps.NewWorker(ctx, ep, ps.Config{Workers: r.Workers, Servers: r.Servers, Epoch: 1, ChunkBytes: r.Chunk})
		if err != nil {
			return nil, err
		}
		return &psWorker{w: w, rank: r.Index, n: len(r.Workers)}, nil
	}
	return nil, fmt.Errorf("unknown system %q", r.System)
}

// jobRoles lists the participants of a job: n workers (ring ranks) and, for
// ps, P servers.
func jobRoles(system string, n, servers, chunk int) []roleSpec {
	var workers, srvs []string
	for i := 0; i < n; i++ {
		workers = append(workers, fmt.Sprintf("w%d", i))
	}
	if system == "ps" {
		for i := 0; i < servers; i++ {
			srvs = append(srvs, fmt.Sprintf("s%d", i))
		}
	}
	var roles []roleSpec
	for i := range workers {
		roles = append(roles, roleSpec{System: system, Index: i, Workers: workers, Servers: srvs, Chunk: chunk})
	}
	for i := range srvs {
		roles = append(roles, roleSpec{System: system, Server: true, Index: i, Workers: workers, Servers: srvs, Chunk: chunk})
	}
	return roles
}

// id is the node ID of a role.
func (r roleSpec) id() string {
	if r.Server {
		return r.Servers[r.Index]
	}
	return r.Workers[r.Index]
}
