package scaling

// The shaped backends of bench scaling --emulate, quic-shaped and
// tcp-shaped: every emulated GPU is a separate peer process (bench/cluster's
// worker subcommand running the "emulate" job, re-executed from the bench
// binary like bench allreduce's peers) in its own network namespace, joined
// to the others through tbf-shaped veth links, running the real collective
// package over transport/quic or transport/tcp (the trainer's default
// gradient plane). The namespaces, the process start-up protocol
// (READY/GO/result/EXIT) and the endpoints are bench/cluster's.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"slices"
	"time"

	"github.com/ringtrain/ringtrain/bench/cluster"
	"github.com/ringtrain/ringtrain/bench/netns"
	"github.com/ringtrain/ringtrain/bench/sim"
	"github.com/ringtrain/ringtrain/collective"
	"github.com/ringtrain/ringtrain/transport"
)

// emuStepTimeout bounds one emulated step of a peer process (the collective's
// per-operation deadline and each step's wait); generous, because a shared
// 2-core machine can stall a peer for seconds.
const emuStepTimeout = time.Minute

// JobName is the worker job of the shaped emulations (cluster.RunWorker).
const JobName = "emulate"

// emuWorkerSpec is what one emulating peer process needs besides the
// cluster's part of its spec.
type emuWorkerSpec struct {
	Rank    int      `json:"rank"`
	Members []string `json:"members"` // ring order
	Chunk   int      `json:"chunk"`   // ring chunk, bytes on the wire
	Plan    emuPlan  `json:"plan"`
	Steps   int      `json:"steps"` // timed steps, after one warm-up step
	// Calib: the α microbenchmark (calibrate.go) instead of steps.
	Calib *calibSpec `json:"calib,omitempty"`
}

// emuWorkerResult is what a peer process measured: the wall time of each
// timed step and its CPU time over them.
type emuWorkerResult struct {
	StepS []float64 `json:"step_s"`
	CPUS  float64   `json:"cpu_s"`
	// Digest identifies the parameters after the steps (trainer steps;
	// 0 for the bench's own).
	Digest uint64 `json:"digest,omitempty"`
}

// emuRun is one emulated configuration's measurement: the record the
// simulator is validated against and, where measured, the CPU the peers
// used over the timed steps.
type emuRun struct {
	sim.Emulated
	// CoresPerPeer is the mean CPU cores a peer used (0: not measured).
	CoresPerPeer float64
	// CPUPerGiB is CPU-seconds per GiB a peer sent (0: not measured).
	CPUPerGiB float64
}

// shapedTransport is the transport (bench/cluster.NewEndpoint's name) of a
// shaped emulation backend (--emu-backend); false for any other backend.
func shapedTransport(backend string) (string, bool) {
	switch backend {
	case "quic-shaped":
		return "quic", true
	case "tcp-shaped":
		return "tcp", true
	}
	return "", false
}

// shapedEmulator runs configurations as peer processes over one transport on
// one set of shaped namespaces, reused by every configuration of a run.
type shapedEmulator struct {
	backend   string // quic-shaped or tcp-shaped
	transport string // bench/cluster.NewEndpoint's name for it
	cl        *cluster.Cluster
	exe       string
	linkBits  float64 // the shaped (scaled-down) rate, bits per second
}

// emuRate is the tc rate that stands for linkBits scaled down by scale, in
// whole kbit/s, and the bits per second it means.
func emuRate(linkBits, scale float64) (string, float64, error) {
	s := fmt.Sprintf("%dkbit", int64(math.Round(linkBits/scale/1e3)))
	bits, err := netns.ParseRate(s)
	return s, bits, err
}

// newShapedEmulator builds namespaces for up to maxN peers, each link shaped
// to linkBits/scale, for a shaped backend.
func newShapedEmulator(ctx context.Context, backend string, linkBits, scale float64, maxN int) (*shapedEmulator, error) {
	tr, ok := shapedTransport(backend)
	if !ok {
		return nil, fmt.Errorf("--emu-backend %q: not a shaped backend (quic-shaped, tcp-shaped)", backend)
	}
	rate, bits, err := emuRate(linkBits, scale)
	if err != nil {
		return nil, err
	}
	if maxN > netns.MaxPeers {
		return nil, fmt.Errorf("%s emulation: %d peers, at most %d", backend, maxN, netns.MaxPeers)
	}
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cl, err := cluster.NewWithConfig(ctx, netns.Config{Peers: max(maxN, 2), Rate: rate, NoBurst: true})
	if errors.Is(err, netns.ErrNotRoot) {
		return nil, fmt.Errorf("--emu-backend %s: %w; without root, --emu-backend mem emulates in one process", backend, err)
	}
	if err != nil {
		return nil, err
	}
	return &shapedEmulator{backend: backend, transport: tr, cl: cl, exe: exe, linkBits: bits}, nil
}

// Close removes the namespaces.
func (q *shapedEmulator) Close() error { return q.cl.Close() }

// emulate runs c with one peer process per rank and returns rank 0's median
// step as the measurement, with the CPU all peers used.
func (q *shapedEmulator) emulate(ctx context.Context, c emuConfig) (emuRun, error) {
	ctx, cancel := context.WithTimeout(ctx, emuTimeout)
	defer cancel()
	plan := c.plan()
	members := make([]string, c.n)
	addrs := map[string]string{}
	for i := range members {
		members[i] = fmt.Sprintf("g%d", i)
		a, err := q.cl.Addr(i, 0)
		if err != nil {
			return emuRun{}, err
		}
		addrs[members[i]] = a
	}
	sec, err := cluster.NewSecret()
	if err != nil {
		return emuRun{}, err
	}
	names := make([]string, c.n)
	cmds := make([]*exec.Cmd, c.n)
	results := make([]emuWorkerResult, c.n)
	out := make([]any, c.n)
	// A bound on each peer process, so that a lost driver never leaves one
	// behind.
	timeout := cluster.ReadyTimeout + time.Duration(c.steps+2)*emuStepTimeout
	for r := range c.n {
		spec := emuWorkerSpec{Rank: r, Members: members, Chunk: c.chunkBytes, Plan: plan, Steps: c.steps}
		b, err := json.Marshal(spec)
		if err != nil {
			return emuRun{}, err
		}
		names[r] = fmt.Sprintf("emulated %s %s n=%d rank %d", c.prof.Model, c.mode, c.n, r)
		cmds[r], err = q.cl.WorkerCmd(ctx, r, q.exe, cluster.Spec{Job: JobName, ID: members[r], Addrs: addrs,
			Transport: q.transport, Secret: sec, Timeout: timeout, Args: b})
		if err != nil {
			return emuRun{}, err
		}
		out[r] = &results[r]
	}
	if err := cluster.RunProcs(ctx, names, cmds, out); err != nil {
		return emuRun{}, fmt.Errorf("emulate %s %s n=%d over %s links: %w", c.prof.Model, c.mode, c.n, q.backend, err)
	}
	return summarizeShaped(c, q.backend, q.linkBits, plan.Floats, results)
}

// summarizeShaped turns the peers' results into the run's record: rank 0's
// median step (as the mem backend reports it) and the CPU per peer over the
// timed steps.
func summarizeShaped(c emuConfig, backend string, linkBits float64, floats int, results []emuWorkerResult) (emuRun, error) {
	if len(results) == 0 || len(results[0].StepS) == 0 {
		return emuRun{}, fmt.Errorf("emulate %s n=%d: no step measured", c.prof.Model, c.n)
	}
	digests := make([]uint64, len(results))
	for r, res := range results {
		digests[r] = res.Digest
	}
	if err := sameDigests(fmt.Sprintf("emulate %s n=%d", c.prof.Model, c.n), digests); err != nil {
		return emuRun{}, err
	}
	steps := slices.Clone(results[0].StepS)
	slices.Sort(steps)
	median := steps[len(steps)/2]
	var cpu, wall float64
	for _, r := range results {
		cpu += r.CPUS
	}
	for _, s := range results[0].StepS {
		wall += s
	}
	run := emuRun{Emulated: c.record(backend, linkBits, float64(c.n*c.prof.BatchPerGPU)/median)}
	if wall > 0 {
		run.CoresPerPeer = cpu / float64(c.n) / wall
	}
	// A ring peer sends 2(n-1)/n of the buffer per all-reduce.
	if sent := float64(len(results[0].StepS)) * float64(c.wire.Size()) * float64(floats) * 2 * float64(c.n-1) / float64(c.n); sent > 0 {
		run.CPUPerGiB = cpu / float64(c.n) / (sent / sim.GiB)
	}
	return run, nil
}

// Job is one emulated GPU in its own peer process: it joins the ring over
// the process's endpoint, then runs warm-up and timed steps (the
// plan's stepper: train.Trainer over an emumodel model, or the bench's own
// emuPeer, whose every step's average is checked exactly), and returns its
// step times and parameter digest (emuWorkerResult).
func Job(ctx context.Context, ep transport.Endpoint, raw json.RawMessage) (any, error) {
	var spec emuWorkerSpec
	if err := json.Unmarshal(raw, &spec); err != nil {
		return nil, fmt.Errorf("emulate job: %w", err)
	}
	calib := spec.Calib != nil && spec.Calib.Repeats >= 1
	if spec.Rank < 0 || spec.Rank >= len(spec.Members) || !calib && (spec.Steps < 1 || spec.Plan.Floats < 1) {
		return nil, fmt.Errorf("emulate job: rank %d of %d, %d steps, %d floats", spec.Rank, len(spec.Members), spec.Steps, spec.Plan.Floats)
	}
	g, err := collective.New(ctx, collective.Config{Endpoint: ep, Members: spec.Members, Epoch: 1,
		ChunkBytes: spec.Chunk, Timeout: emuStepTimeout})
	if err != nil {
		return nil, err
	}
	if calib {
		return ringCalib(ctx, g, *spec.Calib)
	}
	return emuSteps(ctx, g, spec, cluster.SelfCPU)
}

// emuSteps runs spec's warm-up and timed steps on g. Each step's input is
// refilled (untimed) and its average checked exactly.
func emuSteps(ctx context.Context, g *collective.Group, spec emuWorkerSpec, cpu func() float64) (emuWorkerResult, error) {
	var res emuWorkerResult
	peer, err := newStepper(g, spec.Plan)
	if err != nil {
		return res, err
	}
	var c0 float64
	for s := 0; s <= spec.Steps; s++ {
		if s == 1 {
			c0 = cpu()
		}
		peer.refill(g.Rank())
		stepCtx, cancel := context.WithTimeout(ctx, emuStepTimeout)
		start := time.Now()
		err := peer.step(stepCtx)
		d := time.Since(start)
		cancel()
		if err != nil {
			return res, fmt.Errorf("step %d: %w", s, err)
		}
		if s > 0 {
			res.StepS = append(res.StepS, d.Seconds())
		}
		if err := peer.check(g.Size()); err != nil {
			return res, fmt.Errorf("step %d: %w", s, err)
		}
	}
	res.CPUS = cpu() - c0
	res.Digest = peer.digest()
	return res, nil
}

// fillInput sets the input of rank: element i is rank+1 + i%5 (as bench
// allreduce fills its buffers), so the average over n ranks is exact.
func fillInput(buf []float32, rank int) {
	for i := range buf {
		buf[i] = float32(rank + 1 + i%5)
	}
}

// checkAvg verifies an all-reduced (Avg) buffer of n ranks' fillInput: the
// mean of rank+1 over the ranks is (n+1)/2, a multiple of 1/2 and so exact.
func checkAvg(buf []float32, n int) error {
	for i, got := range buf {
		if want := float32(n+1)/2 + float32(i%5); got != want {
			return fmt.Errorf("element %d = %v after averaging over %d peers, want %v", i, got, n, want)
		}
	}
	return nil
}

// peerCPU is the transport CPU model fitted to emulated runs: a ring peer
// uses Fixed + Kappa·x cores while it sends x GiB/s (and receives as much),
// as sim.FitShaped models one stream's two ends.
type peerCPU struct {
	Fixed float64 // cores
	Kappa float64 // CPU-s per GiB sent (with as much received)
	Runs  int
}

// fitPeerCPU fits peerCPU by least squares to the runs that measured CPU with
// more than one peer (a single peer sends nothing).
func fitPeerCPU(runs []emuRun) (peerCPU, error) {
	var sx, sy, sxx, sxy, k float64
	for _, r := range runs {
		if r.N < 2 || !(r.CoresPerPeer > 0) || !(r.CPUPerGiB > 0) {
			continue
		}
		x := r.CoresPerPeer / r.CPUPerGiB // GiB/s sent per peer
		sx, sy, sxx, sxy, k = sx+x, sy+r.CoresPerPeer, sxx+x*x, sxy+x*r.CoresPerPeer, k+1
	}
	den := k*sxx - sx*sx
	if k < 2 || den <= 0 {
		return peerCPU{}, fmt.Errorf("fit transport CPU: %v runs with distinct send rates, want 2", k)
	}
	kappa := (k*sxy - sx*sy) / den
	return peerCPU{Fixed: (sy - kappa*sx) / k, Kappa: kappa, Runs: int(k)}, nil
}
