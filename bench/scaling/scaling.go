// Package scaling is "bench scaling": scaling curves of data-parallel
// training from 8 to 100 GPUs.
//
//	--simulate          run the simulator (bench/sim) over the grid of models,
//	                    GPU counts, link rates and transport cores; write CSV,
//	                    JSON and PNG plots to --out and print the 100-GPU
//	                    summary and the feature table.
//	--validate FILE     read emulated runs (a JSON array of sim.Emulated, as
//	                    bench scaling --emulate will write them) and print the
//	                    simulator's prediction next to each measurement.
//
//	--emulate           scaled emulation on real rings (emulate.go):
//	                    in one process over transport/mem, or with
//	                    --emu-backend quic-shaped as peer processes over QUIC
//	                    on shaped links (quic.go); writes the
//	                    []sim.Emulated records that --validate reads.
//
// Invariants: the simulator (bench/sim) and the emulation are fed the same
// profile timeline and the same bucket plan; every emulated step's average
// is checked exactly; efficiency is always against the same configuration
// with one GPU (simulated) or one peer (emulated).
package scaling

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/ringtrain/ringtrain/bench/profile"
	"github.com/ringtrain/ringtrain/bench/sim"
	"github.com/ringtrain/ringtrain/collective"
)

// scalingOpts are the flags of bench scaling.
type scalingOpts struct {
	simulate    bool
	validate    string
	profilePath string
	gpus        []string
	models      []string
	ns          []int
	gbits       []float64
	cores       []float64
	modes       []string
	transport   string
	chunkKiB    float64
	alphaUS     float64
	latencyUS   float64
	reduceGBs   float64
	bucketBytes float64 // full-size bucket of the float32 arena (the trainer's --bucket-bytes)
	wires       []collective.DType
	emuWires    []collective.DType
	psServers   int
	out         string
	target      float64
	emuCores    float64
	emulate     bool
	emuBackend  string
	emuStep     string
	emuModels   []string
	emuGPUs     []string
	emuNs       []int
	emuGbit     float64
	scale       float64
	emuSteps    int
	emuRepeats  int
	emuChunkKiB float64
	fitAlpha    bool
	// measureAlpha: measure α by the microbenchmark (calibrate.go) before
	// the emulated runs; measuredAlphaUS is its result (NaN: not measured).
	measureAlpha     bool
	measuredAlphaUS  float64
	measuredAlphaByN map[int]float64 // α (s) fitted to each ring size's points alone
	perNode          int
	hier             bool
	intraGBs         float64
}

// modeWire is one step mode the trainer has: overlap mode and wire dtype.
type modeWire struct {
	mode string
	wire collective.DType
}

// modeWires lists --modes × the wire dtypes, in order.
func modeWires(modes []string, wires []collective.DType) []modeWire {
	var out []modeWire
	for _, m := range modes {
		for _, w := range wires {
			out = append(out, modeWire{m, w})
		}
	}
	return out
}

// String names a mode as the tables do: "bucketed", "bucketed bf16".
func (m modeWire) String() string {
	if m.wire == collective.Float32 {
		return m.mode
	}
	return m.mode + " " + m.wire.String()
}

func parseScaling(args []string) (scalingOpts, error) {
	var o scalingOpts
	fs := flag.NewFlagSet("scaling", flag.ContinueOnError)
	fs.BoolVar(&o.simulate, "simulate", false, "simulate the scaling grid")
	fs.StringVar(&o.validate, "validate", "", "JSON file of emulated runs to compare with the simulator")
	fs.StringVar(&o.profilePath, "profile", "bench/calibration/h200_torch2.11.json", "GPU compute profiles")
	gpus := fs.String("gpus", "h200,p100", "GPU profiles: h200 (measured), p100 (H200 timeline scaled to published P100 step times)")
	models := fs.String("models", "inception_v3,resnet50,resnet101,vgg16,gpt2_small", "models")
	ns := fs.String("n", "8,16,32,64,100", "GPU counts")
	gbits := fs.String("gbit", "10,25,100,400", "link rates, Gbit/s per direction")
	cores := fs.String("cores", "8,32", "transport cores per node")
	modes := fs.String("modes", "none,bucketed", "overlap modes: none (one all-reduce after backward), bucketed (buckets reduced as backward produces them)")
	fs.StringVar(&o.transport, "transport", "tcp", "transport CPU-cost preset: tcp (the trainer's default: one TLS connection per neighbour), quic-loopback, quic-xeon, tcp-tls (several connections per neighbour: --lanes), free")
	fs.Float64Var(&o.chunkKiB, "chunk-kib", sim.DefaultChunkBytes/1024, "ring chunk size, KiB")
	fs.Float64Var(&o.alphaUS, "alpha-us", 0, "per-chunk overhead, µs (calibrate from emulated runs)")
	fs.Float64Var(&o.latencyUS, "latency-us", 0, "one-way link latency, µs")
	fs.Float64Var(&o.reduceGBs, "reduce-gbs", sim.DefaultReduceBytesPerSec/1e9, "reduction kernel speed, GB/s")
	bucketBytes := fs.Int("bucket-bytes", collective.DefaultBucketBytes, "fusion bucket of the float32 gradient arena for bucketed overlap, bytes (the trainer's --bucket-bytes; collective.NewBucketer plans the buckets); the emulation divides it by --scale")
	bucketMB := fs.Float64("bucket-mb", 0, "the bucket size in MB (1e6 bytes) instead of --bucket-bytes (older flag)")
	wires := fs.String("wire-dtype", "", "gradient wire dtypes, comma list of fp32, bf16, fp16 (default: fp32,bf16 for --simulate, fp32 for --emulate)")
	fs.IntVar(&o.psServers, "ps-servers", 8, "parameter servers for the TF 0.8 design")
	fs.IntVar(&o.perNode, "gpus-per-node", 1, "GPUs sharing one node's link and transport cores (ring; GPU counts must be multiples)")
	fs.BoolVar(&o.hier, "hierarchical", false, "with --gpus-per-node > 1: reduce within the node first, ring across nodes")
	fs.Float64Var(&o.intraGBs, "intra-gbs", sim.DefaultReduceBytesPerSec/1e9, "intra-node reduce-scatter/all-gather rate for --hierarchical, GB/s")
	fp16 := fs.Bool("fp16", false, "simulate fp16 gradients on the wire only (older flag: --wire-dtype fp16)")
	fs.StringVar(&o.out, "out", "bench/results", "output directory for CSV, JSON and PNG")
	fs.Float64Var(&o.target, "target", 0.10, "validation target, relative error")
	fs.Float64Var(&o.emuCores, "emu-cores", 2, "cores of the emulating machine, shared by all peers (--validate)")
	fs.BoolVar(&o.emulate, "emulate", false, "emulate training steps on real rings (scaled) and validate the simulator against them")
	fs.StringVar(&o.emuBackend, "emu-backend", "mem", "emulation backend: mem (in-process transport/mem links), tcp-shaped or quic-shaped (peer processes over transport/tcp, the trainer's default gradient plane, or transport/quic, in tbf-shaped network namespaces; root)")
	fs.StringVar(&o.emuStep, "emu-step", stepTrainer, "what steps each emulated GPU: trainer (train.Trainer.Step over a model that waits out the profile: the trainer's bucketing and collective calls) or bench (the bench's own step: a collective.Bucketer round driven by the profile)")
	emuModels := fs.String("emu-models", "resnet50,vgg16", "models to emulate")
	emuGPUs := fs.String("emu-gpus", "h200", "GPU profiles to emulate: h200, p100 (as --gpus)")
	emuNs := fs.String("emu-n", "1,2,4,8,16", "peer counts to emulate")
	fs.Float64Var(&o.emuGbit, "emu-gbit", 25, "full-size link rate the emulation stands for, Gbit/s (divided by --scale)")
	fs.Float64Var(&o.scale, "scale", 100, "emulation scale: gradient bytes, chunk and link rate are divided by it")
	fs.Float64Var(&o.emuChunkKiB, "emu-chunk-kib", sim.DefaultChunkBytes/1024, "ring chunk of the scaled emulated run, KiB (not divided by --scale: the mem backend needs messages ≥ 5 ms on the wire)")
	fs.BoolVar(&o.fitAlpha, "fit-alpha", false, "also fit the per-chunk overhead to the emulated runs and validate with it")
	fs.BoolVar(&o.measureAlpha, "measure-alpha", false, "tcp-shaped, quic-shaped: measure the per-chunk overhead with ring all-reduces of 256 B-512 KiB on the emulation's links before its runs, and validate with it too")
	fs.IntVar(&o.emuSteps, "emu-steps", 5, "timed steps per emulated configuration (after one warm-up step)")
	fs.IntVar(&o.emuRepeats, "emu-repeats", 1, "runs per emulated configuration; the run with the median images/s is reported")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	var err error
	o.gpus, o.models, o.modes = splitList(*gpus), splitList(*models), splitList(*modes)
	if o.ns, err = parseInts(*ns); err != nil {
		return o, fmt.Errorf("--n: %w", err)
	}
	if o.gbits, err = parseFloats(*gbits); err != nil {
		return o, fmt.Errorf("--gbit: %w", err)
	}
	if o.cores, err = parseFloats(*cores); err != nil {
		return o, fmt.Errorf("--cores: %w", err)
	}
	o.emuModels, o.emuGPUs = splitList(*emuModels), splitList(*emuGPUs)
	if o.emuNs, err = parseInts(*emuNs); err != nil {
		return o, fmt.Errorf("--emu-n: %w", err)
	}
	if !(o.scale >= 1) || o.emuSteps < 1 || o.emuRepeats < 1 || !(o.emuGbit > 0) {
		return o, fmt.Errorf("--scale %v, --emu-steps %d, --emu-repeats %d, --emu-gbit %v: want scale ≥ 1, steps ≥ 1, repeats ≥ 1, rate > 0",
			o.scale, o.emuSteps, o.emuRepeats, o.emuGbit)
	}
	if o.perNode < 1 {
		return o, fmt.Errorf("--gpus-per-node %d", o.perNode)
	}
	_, shaped := shapedTransport(o.emuBackend)
	if o.emuBackend != "mem" && !shaped {
		return o, fmt.Errorf("--emu-backend %q: want mem, tcp-shaped or quic-shaped", o.emuBackend)
	}
	o.measuredAlphaUS = math.NaN()
	if o.measureAlpha && (!o.emulate || !shaped) {
		return o, errors.New("--measure-alpha needs --emulate --emu-backend tcp-shaped or quic-shaped")
	}
	if o.emuStep != stepTrainer && o.emuStep != stepBench {
		return o, fmt.Errorf("--emu-step %q: want %s or %s", o.emuStep, stepTrainer, stepBench)
	}
	for _, m := range o.modes {
		if m != "none" && m != "bucketed" {
			return o, fmt.Errorf("--modes: unknown mode %q", m)
		}
	}
	o.bucketBytes = float64(*bucketBytes)
	if *bucketMB > 0 {
		o.bucketBytes = *bucketMB * 1e6
	}
	if !(o.bucketBytes > 0) {
		return o, fmt.Errorf("--bucket-bytes %v: want > 0", o.bucketBytes)
	}
	o.wires, o.emuWires = []collective.DType{collective.Float32, collective.BFloat16}, []collective.DType{collective.Float32}
	switch {
	case *wires != "":
		var ws []collective.DType
		for _, w := range splitList(*wires) {
			d, err := collective.ParseDType(w)
			if err != nil {
				return o, fmt.Errorf("--wire-dtype: %w", err)
			}
			ws = append(ws, d)
		}
		o.wires, o.emuWires = ws, ws
	case *fp16:
		o.wires = []collective.DType{collective.Float16}
	}
	return o, nil
}

// Run is "bench scaling".
func Run(ctx context.Context, args []string) error {
	o, err := parseScaling(args)
	if err != nil {
		return err
	}
	return scaling(ctx, o, os.Stdout)
}

// scaling runs what o asks for, printing tables to out.
func scaling(ctx context.Context, o scalingOpts, out io.Writer) error {
	if !o.simulate && !o.emulate && o.validate == "" {
		return errors.New("nothing to do: give --simulate, --emulate and/or --validate FILE")
	}
	f, err := profile.Load(o.profilePath)
	if err != nil {
		return err
	}
	if o.validate != "" {
		if err := runValidate(o, f, out); err != nil {
			return err
		}
	}
	if o.emulate {
		if err := runEmulate(ctx, o, f, out); err != nil {
			return err
		}
	}
	if !o.simulate {
		return nil
	}
	profs, err := selectProfiles(f, o.gpus, o.models)
	if err != nil {
		return err
	}
	rows, err := simulateGrid(ctx, o, profs)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(o.out, 0o755); err != nil {
		return err
	}
	if err := writeRows(o.out, rows); err != nil {
		return err
	}
	pngs, err := plotRows(o, rows)
	if err != nil {
		return err
	}
	if err := printSummary(out, o, rows); err != nil {
		return err
	}
	summary, err := writeSummary(o.out, o, rows)
	if err != nil {
		return err
	}
	feats, err := featureTable(o, profs)
	if err != nil {
		return err
	}
	if err := writeFeatures(out, o.out, feats); err != nil {
		return err
	}
	_, err = fmt.Fprintf(out, "wrote %s, %s, %s, %s and %d plots\n", filepath.Join(o.out, "scaling_sim.csv"),
		filepath.Join(o.out, "scaling_sim.json"), filepath.Join(o.out, "scaling_features.csv"), summary, len(pngs))
	return err
}

// selectProfiles returns the requested models' profiles for each GPU.
func selectProfiles(f *profile.File, gpus, models []string) ([]profile.Profile, error) {
	var out []profile.Profile
	for _, g := range gpus {
		switch g {
		case "h200":
			for _, m := range models {
				p, err := f.Find(m, "")
				if err != nil {
					return nil, err
				}
				out = append(out, p)
			}
		case "p100":
			pub, err := profile.P100(f)
			if err != nil {
				return nil, err
			}
			derived, err := profile.Derive(f, pub)
			if err != nil {
				return nil, err
			}
			for _, p := range derived {
				if slices.Contains(models, p.Model) {
					out = append(out, p)
				}
			}
		default:
			return nil, fmt.Errorf("--gpus: unknown GPU %q (h200, p100)", g)
		}
	}
	return out, nil
}

// emuProfile is the profile an emulated run used: gpu as --gpus names it
// ("" is the measured h200).
func emuProfile(f *profile.File, gpu, model string) (profile.Profile, error) {
	if gpu == "" {
		gpu = "h200"
	}
	ps, err := selectProfiles(f, []string{gpu}, []string{model})
	if err != nil {
		return profile.Profile{}, err
	}
	if len(ps) != 1 {
		return profile.Profile{}, fmt.Errorf("no %s profile for %s", gpu, model)
	}
	return ps[0], nil
}

// baseNet is the cluster described by the flags at one link rate and core count.
func (o scalingOpts) baseNet(gbit, cores float64) (sim.Net, error) {
	tr, err := sim.TransportPreset(o.transport, cores)
	if err != nil {
		return sim.Net{}, err
	}
	return sim.Net{
		Link:      sim.Link{BitsPerSec: gbit * 1e9, LatencySec: o.latencyUS * 1e-6},
		Transport: tr,
		Ring: sim.Ring{ChunkBytes: o.chunkKiB * 1024, AlphaSec: o.alphaUS * 1e-6,
			ReduceBytesPerSec: o.reduceGBs * 1e9},
	}, nil
}

// runValidate compares emulated runs with the simulator. The emulating
// machine's transport is quic-go through shaped links (sim.ShapedQUICPoints)
// with --emu-cores shared evenly by the n peers.
func runValidate(o scalingOpts, f *profile.File, out io.Writer) error {
	b, err := os.ReadFile(o.validate)
	if err != nil {
		return err
	}
	var runs []sim.Emulated
	if err := json.Unmarshal(b, &runs); err != nil {
		return fmt.Errorf("%s: %w", o.validate, err)
	}
	vs, err := validateRuns(o, f, runs, out)
	if err != nil || len(vs) == 0 {
		return err
	}
	// The plots of an emulation file go next to it, named after it.
	pngs, err := plotEmulated(filepath.Dir(o.validate), strings.TrimSuffix(filepath.Base(o.validate), ".json"), vs)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(out, "wrote %v\n", pngs)
	return err
}

// validateRuns prints the simulator's prediction of each emulated run with
// --alpha-us; with --measure-alpha's results, at the measured α and at the
// α measured on each run's ring size; with --fit-alpha, at the α fitted to
// the runs (a reference only: fitting to the runs validated is no
// validation). It returns the validations at the measured α, or else at
// the last α.
func validateRuns(o scalingOpts, f *profile.File, runs []sim.Emulated, out io.Writer) ([]sim.Validation, error) {
	prof := func(e sim.Emulated) (profile.Profile, error) { return emuProfile(f, e.GPU, e.Model) }
	alphaOf := func(sim.Emulated) float64 { return o.alphaUS * 1e-6 }
	netOf := func(e sim.Emulated) (sim.Net, error) {
		net, err := emulationNet(e, o.emuCores)
		net.Ring = sim.Ring{AlphaSec: alphaOf(e), ReduceBytesPerSec: o.reduceGBs * 1e9}
		return net, err
	}
	table := func() ([]sim.Validation, error) {
		var vs []sim.Validation
		for _, e := range runs {
			p, err := prof(e)
			if err != nil {
				return nil, err
			}
			net, err := netOf(e)
			if err != nil {
				return nil, err
			}
			v, err := sim.Validate(p, e, net)
			if err != nil {
				return nil, err
			}
			vs = append(vs, v)
		}
		return vs, sim.WriteValidationTable(out, vs, o.target)
	}
	fmt.Fprintf(out, "per-chunk overhead alpha = %g µs\n", o.alphaUS)
	vs, err := table()
	if err != nil {
		return nil, err
	}
	measured := !math.IsNaN(o.measuredAlphaUS)
	if measured {
		alphaOf = func(sim.Emulated) float64 { return o.measuredAlphaUS * 1e-6 }
		fmt.Fprintf(out, "\nper-chunk overhead alpha measured by the microbenchmark (--measure-alpha) = %.1f µs\n", o.measuredAlphaUS)
		if vs, err = table(); err != nil {
			return nil, err
		}
		if len(o.measuredAlphaByN) > 0 {
			alphaOf = func(e sim.Emulated) float64 {
				if a, ok := o.measuredAlphaByN[e.N]; ok {
					return a
				}
				return o.measuredAlphaUS * 1e-6
			}
			fmt.Fprintf(out, "\nper-chunk overhead alpha measured by the microbenchmark on each run's ring size:")
			for _, n := range slices.Sorted(maps.Keys(o.measuredAlphaByN)) {
				fmt.Fprintf(out, " n=%d %.1f µs", n, 1e6*o.measuredAlphaByN[n])
			}
			fmt.Fprintln(out)
			if _, err := table(); err != nil {
				return nil, err
			}
		}
	}
	if !o.fitAlpha {
		return vs, nil
	}
	alphaOf = func(sim.Emulated) float64 { return o.alphaUS * 1e-6 }
	alpha, err := sim.FitAlpha(runs, prof, netOf, 10e-3)
	if err != nil {
		return nil, err
	}
	alphaOf = func(sim.Emulated) float64 { return alpha }
	fmt.Fprintf(out, "\nper-chunk overhead alpha fitted to these runs = %.1f µs (a reference only: fitted to the runs it validates)\n", alpha*1e6)
	fitted, err := table()
	if err != nil || measured {
		return vs, err
	}
	return fitted, nil
}

// emulationNet is the network model of an emulated run's backend: its
// transport's CPU cost and the payload share of its links (the validation
// sets rate and chunk from the run).
func emulationNet(e sim.Emulated, cores float64) (sim.Net, error) {
	switch e.Backend {
	case "mem":
		// transport/mem carries exactly its rate as payload, at no CPU cost
		// the model knows of.
		tr, err := sim.TransportPreset("free", cores)
		return sim.Net{Link: sim.Link{Goodput: 1}, Transport: tr}, err
	case "quic-shaped":
		tr, err := sim.FitShaped("quic-shaped", sim.ShapedQUICPoints(), 0, cores/float64(max(e.N, 1)))
		if err != nil {
			return sim.Net{}, err
		}
		if tr.Cores <= tr.FixedCores {
			return sim.Net{}, fmt.Errorf("validate %s n=%d: %.2f cores per peer cannot carry a stream (fixed cost %.2f)", e.Model, e.N, tr.Cores, tr.FixedCores)
		}
		return sim.Net{Transport: tr}, nil
	case "tcp-shaped":
		// transport/tcp: the simulator's tcp preset, the run's cores shared
		// by its peers.
		tr, err := sim.TransportPreset("tcp", cores/float64(max(e.N, 1)))
		return sim.Net{Transport: tr}, err
	}
	return sim.Net{}, fmt.Errorf("validate %s n=%d: unknown backend %q (mem, tcp-shaped, quic-shaped)", e.Model, e.N, e.Backend)
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

func parseInts(s string) ([]int, error) {
	var out []int
	for _, f := range splitList(s) {
		v, err := strconv.Atoi(f)
		if err != nil || v < 1 {
			return nil, fmt.Errorf("bad count %q", f)
		}
		out = append(out, v)
	}
	return out, nil
}

func parseFloats(s string) ([]float64, error) {
	var out []float64
	for _, f := range splitList(s) {
		v, err := strconv.ParseFloat(f, 64)
		if err != nil || !(v > 0) {
			return nil, fmt.Errorf("bad value %q", f)
		}
		out = append(out, v)
	}
	return out, nil
}
