package scaling

// Scaled emulation of training steps on real ringtrain rings.
//
// Each peer runs the profile's step: it waits out the GPU's forward and
// backward time (the GPU is emulated by its measured time, not computed),
// all-reduces a gradient buffer of params/scale floats with the real
// collective package, and waits out the optimizer. The link rate is divided
// by the same scale, so communication takes as long as at full size while
// the buffers fit this machine. In "bucketed" mode the buffer is reduced in
// fusion buckets with AllReduceAsync, each launched when its last gradient
// becomes ready in the profile's timeline.
//
// Backends: "mem" runs all peers in this process over transport/mem with
// rate-limited links (no transport CPU cost: it measures the ring protocol and
// the executor); "quic-shaped" runs each peer as a separate process over QUIC
// through tbf-shaped namespaces (quic.go). Both produce the same
// sim.Emulated records, which --validate and the table below consume.

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/ringtrain/ringtrain/bench/profile"
	"github.com/ringtrain/ringtrain/bench/sim"
	"github.com/ringtrain/ringtrain/collective"
	"github.com/ringtrain/ringtrain/transport/mem"
)

// emuTimeout bounds one emulated configuration.
const emuTimeout = 5 * time.Minute

// minMessage is the shortest wire time per message the mem backend emulates
// faithfully on a host whose timers overshoot short sleeps by ~1 ms.
const minMessage = 5 * time.Millisecond

// emuConfig is one emulated configuration.
type emuConfig struct {
	prof        profile.Profile
	n           int
	linkBits    float64 // the full-size link rate being emulated
	scale       float64
	chunkBytes  int // scaled
	mode        string
	bucketBytes float64 // full-size bucket (of the float32 arena), as the trainer's --bucket-bytes
	wire        collective.DType
	steps       int    // timed steps (after one warm-up step)
	driver      string // stepTrainer or stepBench (empty: stepBench)
}

// emuSegment is one gradient's range of the flat arena and when backward
// makes it ready (sim.Segments of the scaled timeline).
type emuSegment struct {
	Off   int           `json:"off"`
	Len   int           `json:"len"`
	Ready time.Duration `json:"ready"` // from the start of backward
}

// emuPlan is what one emulated GPU computes and reduces in a step. Its
// fields are exported because the QUIC backend sends it to its peer
// processes as JSON.
type emuPlan struct {
	Floats   int          `json:"floats"`   // gradient arena length
	Segments []emuSegment `json:"segments"` // in ready order
	// Bucketed: a collective.Bucketer over Segments with BucketBytes (of
	// the scaled arena) reduces the step, as the trainer does; otherwise
	// one all-reduce of the whole arena after backward.
	Bucketed    bool   `json:"bucketed"`
	BucketBytes int    `json:"bucket_bytes"`
	Wire        string `json:"wire"`
	// Trainer: the peer steps train.Trainer over an emumodel model of
	// Segments (trainerPeer) with Batch samples; otherwise the bench's own
	// step (emuPeer).
	Trainer bool `json:"trainer,omitempty"`
	Batch   int  `json:"batch,omitempty"`
	// Forward, Backward and Optimizer are the profile's compute times.
	Forward   time.Duration `json:"forward"`
	Backward  time.Duration `json:"backward"`
	Optimizer time.Duration `json:"optimizer"`
}

// scaledBucketBytes is the bucket size of the scaled arena.
func (c emuConfig) scaledBucketBytes() int {
	return max(int(math.Round(c.bucketBytes/c.scale)), 1)
}

// plan is c's step: the scaled timeline's segments (the same the simulator
// plans buckets over, sim.Segments) and the compute times.
func (c emuConfig) plan() emuPlan {
	tl := c.prof.Timeline()
	ms := func(v float64) time.Duration { return time.Duration(v * float64(time.Millisecond)) }
	p := emuPlan{Bucketed: c.mode == "bucketed", Wire: c.wire.String(), Trainer: c.driver == stepTrainer, Batch: c.prof.BatchPerGPU,
		Forward: ms(tl.ForwardMs), Backward: ms(tl.BackwardMs), Optimizer: ms(tl.OptimizerMs)}
	if p.Bucketed {
		p.BucketBytes = c.scaledBucketBytes()
	}
	for _, sg := range sim.Segments(tl, c.scale) {
		p.Segments = append(p.Segments, emuSegment{Off: sg.Off, Len: sg.Len, Ready: ms(sg.ReadyMs)})
		p.Floats = sg.Off + sg.Len
	}
	return p
}

// record is the sim.Emulated record of c, measured at images/s on links
// of linkBits (already scaled down).
func (c emuConfig) record(backend string, linkBits, imagesPerSec float64) sim.Emulated {
	e := sim.Emulated{Backend: backend, Model: c.prof.Model, N: c.n, LinkBitsPerSec: linkBits, Scale: c.scale,
		ChunkBytes: float64(c.chunkBytes), Overlap: c.mode == "bucketed", MeasuredImagesPerSec: imagesPerSec}
	if e.Overlap {
		e.BucketBytes = float64(c.scaledBucketBytes())
	}
	if c.wire != collective.Float32 {
		e.Wire = c.wire.String()
	}
	if c.driver == stepTrainer {
		e.Driver = stepTrainer
	}
	return e
}

// emuPeer is one emulated GPU across its steps: its gradient arena and, in
// bucketed mode, the Bucketer built once for the run, as the trainer builds
// it.
type emuPeer struct {
	g     *collective.Group
	plan  emuPlan
	wire  collective.DType
	arena []float32
	b     *collective.Bucketer
}

func newEmuPeer(g *collective.Group, p emuPlan) (*emuPeer, error) {
	wire, err := collective.ParseDType(p.Wire)
	if err != nil {
		return nil, err
	}
	e := &emuPeer{g: g, plan: p, wire: wire, arena: make([]float32, p.Floats)}
	if p.Bucketed {
		segs := make([]collective.Segment, len(p.Segments))
		for i, s := range p.Segments {
			segs[i] = collective.Segment{Off: s.Off, Len: s.Len}
		}
		if e.b, err = collective.NewBucketer(e.arena, segs, collective.BucketConfig{BucketBytes: p.BucketBytes, Op: collective.Avg, Wire: wire}); err != nil {
			return nil, err
		}
	}
	return e, nil
}

// emulateMem runs c on an in-process ring and returns the measurement: the
// median step time of rank 0 over c.steps timed steps.
func emulateMem(ctx context.Context, c emuConfig) (sim.Emulated, error) {
	ctx, cancel := context.WithTimeout(ctx, emuTimeout)
	defer cancel()
	plan := c.plan()
	rate := c.linkBits / 8 / c.scale // bytes per second per direction
	netw := mem.NewNetwork()
	ids := make([]string, c.n)
	for i := range ids {
		ids[i] = fmt.Sprintf("peer%03d", i)
	}
	eps, err := netw.Endpoints(ids...)
	if err != nil {
		return sim.Emulated{}, err
	}
	defer func() {
		for _, e := range eps {
			e.Close()
		}
	}()
	for i := range ids {
		for j := i + 1; j < c.n; j++ {
			netw.SetLink(ids[i], ids[j], mem.Link{Rate: rate})
		}
	}
	peers := make([]emuStepper, c.n)
	errs := make([]error, c.n)
	var wg sync.WaitGroup
	for r := range c.n {
		wg.Go(func() {
			g, err := collective.New(ctx, collective.Config{Endpoint: eps[r], Members: ids, ChunkBytes: c.chunkBytes})
			if err == nil {
				peers[r], err = newStepper(g, plan)
			}
			errs[r] = err
		})
	}
	wg.Wait()
	for r, err := range errs {
		if err != nil {
			return sim.Emulated{}, fmt.Errorf("emulate %s n=%d: rank %d: %w", c.prof.Model, c.n, r, err)
		}
	}
	stepTimes := make([]time.Duration, 0, c.steps)
	for r := range c.n {
		wg.Go(func() {
			for s := 0; s < c.steps+1; s++ {
				start := time.Now()
				if err := peers[r].step(ctx); err != nil {
					errs[r] = fmt.Errorf("step %d: %w", s, err)
					cancel() // the others fail fast instead of waiting for this rank
					return
				}
				if r == 0 && s > 0 {
					stepTimes = append(stepTimes, time.Since(start))
				}
			}
		})
	}
	wg.Wait()
	for r, err := range errs {
		if err != nil {
			return sim.Emulated{}, fmt.Errorf("emulate %s n=%d: rank %d: %w", c.prof.Model, c.n, r, err)
		}
	}
	digests := make([]uint64, c.n)
	for r, p := range peers {
		digests[r] = p.digest()
	}
	if err := sameDigests(fmt.Sprintf("emulate %s n=%d", c.prof.Model, c.n), digests); err != nil {
		return sim.Emulated{}, err
	}
	slices.Sort(stepTimes)
	median := stepTimes[len(stepTimes)/2].Seconds()
	return c.record("mem", 8*rate, float64(c.n*c.prof.BatchPerGPU)/median), nil
}

// step is one emulated training step of one peer. Compute is emulated by
// sleeping to deadlines measured from the step's start, so timer overshoot
// (about 1 ms for short sleeps on the development VM) does not accumulate.
// The optimizer's time is spent before forward rather than after the
// all-reduce: in the steady state of a synchronous ring the step period is
// the same, and a sub-millisecond sleep of its own would overshoot.
// Bucketed, it drives one Bucketer round as the trainer does: each
// segment is marked ready when backward has produced it, and the round's
// Wait (which launches what is left) ends the step.
func (e *emuPeer) step(ctx context.Context) error {
	p := e.plan
	backward := time.Now().Add(p.Optimizer + p.Forward)
	if err := sleepUntil(ctx, backward); err != nil {
		return err
	}
	end := backward.Add(p.Backward)
	switch {
	case e.g.Size() == 1:
		return sleepUntil(ctx, end)
	case e.b == nil:
		if err := sleepUntil(ctx, end); err != nil {
			return err
		}
		return e.g.AllReduceWire(ctx, e.arena, collective.Avg, e.wire)
	}
	r := e.b.Start(ctx, e.g)
	for i, s := range p.Segments {
		if err := sleepUntil(ctx, backward.Add(s.Ready)); err != nil {
			return errors.Join(err, r.Wait(ctx))
		}
		if err := r.Ready(i); err != nil {
			return errors.Join(err, r.Wait(ctx))
		}
	}
	if err := sleepUntil(ctx, end); err != nil {
		return errors.Join(err, r.Wait(ctx))
	}
	return r.Wait(ctx)
}

// shortestMessage is the wire time of the smallest chunk a configuration
// sends: the mem backend's rate limiter sleeps per message, so messages much
// shorter than the host's timer slack run slow.
func (c emuConfig) shortestMessage() (time.Duration, error) {
	buckets, err := c.buckets()
	if err != nil {
		return 0, err
	}
	rate := c.linkBits / 8 / c.scale
	least := math.Inf(1)
	for _, b := range buckets {
		least = min(least, min(float64(c.chunkBytes), b.Bytes/float64(c.n)))
	}
	return time.Duration(least / rate * float64(time.Second)), nil
}

// buckets is the simulator's bucket plan of c (one bucket unbucketed).
func (c emuConfig) buckets() ([]sim.Bucket, error) {
	st := sim.Step{Design: sim.DesignRing, Overlap: c.mode == "bucketed", BucketBytes: float64(c.scaledBucketBytes()),
		Wire: c.wire, Scale: c.scale}
	return st.Buckets(c.prof.Timeline())
}

// sleepUntil waits until deadline t or until ctx is done.
func sleepUntil(ctx context.Context, deadline time.Time) error {
	d := time.Until(deadline)
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// runEmulate emulates every --emu-models × --modes × --emu-n configuration,
// prints the measurements with their efficiency against the emulated single
// peer, writes them to scaling_emulated.json (the shaped backends:
// emulatedFile's name) in --out and prints the simulator's prediction
// of each.
func runEmulate(ctx context.Context, o scalingOpts, f *profile.File, out io.Writer) (err error) {
	chunk := max(4*int(math.Round(o.emuChunkKiB*1024/4)), 4)
	emulate := func(ctx context.Context, c emuConfig) (emuRun, error) {
		e, err := emulateMem(ctx, c)
		return emuRun{Emulated: e}, err
	}
	file := "scaling_emulated.json"
	_, shaped := shapedTransport(o.emuBackend)
	if shaped {
		q, err := newShapedEmulator(ctx, o.emuBackend, o.emuGbit*1e9, o.scale, slices.Max(o.emuNs))
		if err != nil {
			return err
		}
		defer func() { err = errors.Join(err, q.Close()) }()
		emulate, file = q.emulate, emulatedFile(o.emuBackend)+".json"
		if o.measureAlpha {
			cal, err := q.measureAlpha(ctx, o.emuNs, chunk, o.reduceGBs*1e9, o.out, out)
			if err != nil {
				return err
			}
			o.measuredAlphaUS, o.measuredAlphaByN = cal.AlphaSec*1e6, cal.PerN
		}
	}
	alphaUS := o.alphaUS // the per-run table's
	if !math.IsNaN(o.measuredAlphaUS) {
		alphaUS = o.measuredAlphaUS
	}
	var runs []sim.Emulated
	var measured []emuRun
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(out, "Scaled emulation (%s backend, %s steps): %g Gbit/s links and gradients divided by %g, chunk %d B (scaled run), median of %d steps, median of %d runs; simulated with α = %.1f µs\n",
		o.emuBackend, o.emuStep, o.emuGbit, o.scale, chunk, o.emuSteps, o.emuRepeats, alphaUS)
	fmt.Fprintln(tw, "gpu\tmodel\tmode\twire\tn\tbuckets\tlink Mbit/s\tgrad MB\tstep ms\timages/s\tefficiency\tsimulated img/s\terror\tcores/peer\tCPU-s/GiB sent\t")
	for _, gm := range emuPairs(o.emuGPUs, o.emuModels) {
		gpu, m := gm[0], gm[1]
		p, err := emuProfile(f, gpu, m)
		if err != nil {
			return err
		}
		for _, mw := range modeWires(o.modes, o.emuWires) {
			mode, wire := mw.mode, mw.wire
			var one float64 // images/s of one emulated peer
			for _, n := range o.emuNs {
				c := emuConfig{prof: p, n: n, linkBits: o.emuGbit * 1e9, scale: o.scale, chunkBytes: chunk,
					mode: mode, bucketBytes: o.bucketBytes, wire: wire, steps: o.emuSteps, driver: o.emuStep}
				d, err := c.shortestMessage()
				if err != nil {
					return err
				}
				bks, err := c.buckets()
				if err != nil {
					return err
				}
				if o.emuBackend == "mem" && n > 1 && d < minMessage {
					fmt.Fprintf(out, "warning: %s %s n=%d sends %v messages; the mem backend's per-message sleeps overshoot by up to ~1 ms here\n", m, mode, n, d)
				}
				run, err := emulateMedian(ctx, emulate, c, o.emuRepeats)
				if err != nil {
					return err
				}
				e := run.Emulated
				if gpu != "h200" {
					e.GPU = gpu
				}
				net, err := emulationNet(e, o.emuCores)
				if err != nil {
					return err
				}
				net.Ring = sim.Ring{AlphaSec: alphaUS * 1e-6, ReduceBytesPerSec: o.reduceGBs * 1e9}
				v, err := sim.Validate(p, e, net)
				if err != nil {
					return err
				}
				if n == 1 {
					one = e.MeasuredImagesPerSec
				}
				eff := "-"
				if one > 0 {
					eff = fmt.Sprintf("%.1f%%", 100*e.MeasuredImagesPerSec/(float64(n)*one))
				}
				cores, perGiB := "-", "-"
				if run.CoresPerPeer > 0 {
					cores = fmt.Sprintf("%.3f", run.CoresPerPeer)
				}
				if run.CPUPerGiB > 0 {
					perGiB = fmt.Sprintf("%.1f", run.CPUPerGiB)
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%.1f\t%.3f\t%.1f\t%.1f\t%s\t%.1f\t%+.1f%%\t%s\t%s\t\n", gpu, m, mode, wire, n, len(bks), e.LinkBitsPerSec/1e6,
					float64(wire.Size())*float64(p.Params)/o.scale/1e6, 1000*float64(n*p.BatchPerGPU)/e.MeasuredImagesPerSec,
					e.MeasuredImagesPerSec, eff, v.PredictedImagesPerSec, 100*v.RelErr, cores, perGiB)
				runs = append(runs, e)
				measured = append(measured, run)
			}
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if shaped {
		if c, err := fitPeerCPU(measured); err != nil {
			fmt.Fprintf(out, "transport CPU: %v\n", err)
		} else {
			fmt.Fprintf(out, "transport CPU fitted to %d runs (cores per peer = fixed + κ·GiB/s sent, as much received): fixed %.3f cores, κ %.1f CPU-s/GiB", c.Runs, c.Fixed, c.Kappa)
			if ref, err := emulationNet(sim.Emulated{Backend: o.emuBackend, N: 1}, 1); err == nil {
				fmt.Fprintf(out, " (the simulator's model of %s: fixed %.3f, κ %.1f)", o.emuBackend, ref.Transport.FixedCores, ref.Transport.CPUSecPerGiB)
			}
			fmt.Fprintln(out)
		}
	}
	if err := os.MkdirAll(o.out, 0o755); err != nil {
		return err
	}
	js, err := json.MarshalIndent(runs, "", " ")
	if err != nil {
		return err
	}
	path := filepath.Join(o.out, file)
	if err := os.WriteFile(path, append(js, '\n'), 0o644); err != nil {
		return err
	}
	fmt.Fprintf(out, "\nValidation: simulator vs emulation (wrote %s; rerun with --validate %s)\n", path, path)
	vs, err := validateRuns(o, f, runs, out)
	if err != nil || !shaped {
		return err
	}
	pngs, err := plotEmulated(o.out, emulatedFile(o.emuBackend), vs)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "wrote %v\n", pngs)
	return nil
}

// emuPairs lists (gpu, model) in the order they are emulated.
func emuPairs(gpus, models []string) [][2]string {
	var out [][2]string
	for _, g := range gpus {
		for _, m := range models {
			out = append(out, [2]string{g, m})
		}
	}
	return out
}

// emulateMedian runs c repeats times and returns the run with the median
// images/s (the upper median for an even count).
func emulateMedian(ctx context.Context, emulate func(context.Context, emuConfig) (emuRun, error), c emuConfig, repeats int) (emuRun, error) {
	runs := make([]emuRun, 0, repeats)
	for range repeats {
		r, err := emulate(ctx, c)
		if err != nil {
			return emuRun{}, err
		}
		runs = append(runs, r)
	}
	slices.SortFunc(runs, func(a, b emuRun) int { return cmp.Compare(a.MeasuredImagesPerSec, b.MeasuredImagesPerSec) })
	return runs[len(runs)/2], nil
}

// emulatedFile is the base name of a shaped backend's emulated runs (JSON)
// and plots: scaling_emulated_quic for quic-shaped, as before tcp-shaped
// existed, and scaling_emulated_tcp.
func emulatedFile(backend string) string {
	tr, _ := shapedTransport(backend)
	return "scaling_emulated_" + tr
}
