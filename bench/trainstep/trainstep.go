// Package trainstep is "bench train": training steps per second of the real
// trainer (train.Trainer stepping the MLP or the CNN on MNIST) on n peers,
// with the gradients reduced in one all-reduce after backward or bucketed
// (collective.Bucketer, launched from backward), side by side in one run.
//
// Peers run either in this process over transport/mem (--transport mem,
// links optionally rate-limited per pair with mem.Link), or as separate
// processes over transport/tcp (the trainer's default gradient plane) or
// transport/quic (bench/cluster's worker subcommand running the
// "trainstep" job), on loopback or each in its own network namespace behind
// a tbf-shaped link (--links RATE, root). Every configuration runs warm-up
// steps and then timed ones; a step's time is the slowest rank's, and the
// table gives the median.
package trainstep

import (
	"cmp"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ringtrain/ringtrain/bench/netns"
	"github.com/ringtrain/ringtrain/collective"
	"github.com/ringtrain/ringtrain/data"
	"github.com/ringtrain/ringtrain/model"
	"github.com/ringtrain/ringtrain/optim"
	"github.com/ringtrain/ringtrain/train"
)

// JobName is the worker job of a peer process (cluster.RunWorker).
const JobName = "trainstep"

// stepTimeout bounds one step of one peer (its collective operations and
// the wait for them); generous, as a shared 2-core machine stalls peers.
const stepTimeout = 2 * time.Minute

// peerSpec is one peer's part of a configuration.
type peerSpec struct {
	Model       string   `json:"model"`
	Rank        int      `json:"rank"`
	Members     []string `json:"members"`
	Chunk       int      `json:"chunk"`
	Batch       int      `json:"batch"` // per peer
	Warmup      int      `json:"warmup"`
	Steps       int      `json:"steps"`
	BucketBytes int      `json:"bucket_bytes"` // 0: one all-reduce after backward
	Wire        string   `json:"wire"`
}

// peerResult is what one peer measured over its timed steps.
type peerResult struct {
	StepS     []float64 `json:"step_s"`
	CommWaitS []float64 `json:"comm_wait_s"` // waiting for the reduction after backward
	CPUS      float64   `json:"cpu_s"`       // this process's CPU (peer processes only)
	Buckets   int       `json:"buckets"`
	GradBytes int       `json:"grad_bytes"`
	Digest    string    `json:"digest"` // of the parameters after the last step
}

func buildModel(name string) (*model.Model, error) {
	switch name {
	case "mlp":
		return model.NewMLP(1)
	case "cnn":
		return model.NewCNN(1)
	}
	return nil, fmt.Errorf("unknown model %q (want mlp or cnn)", name)
}

// runPeer steps one peer's trainer on g: spec.Warmup untimed steps, then
// spec.Steps timed ones.
func runPeer(ctx context.Context, g *collective.Group, set *data.Set, spec peerSpec) (peerResult, error) {
	var res peerResult
	m, err := buildModel(spec.Model)
	if err != nil {
		return res, err
	}
	wire, err := collective.ParseDType(spec.Wire)
	if err != nil {
		return res, err
	}
	tr, err := train.New(train.Config{Model: m, Optimizer: &optim.SGD{Momentum: 0.9}, LR: optim.Scaler{BaseLR: 0.01, BaseBatch: 32},
		Train: set, BatchPerPeer: spec.Batch, Seed: 1, BucketBytes: spec.BucketBytes, Wire: wire})
	if err != nil {
		return res, err
	}
	res.Buckets, res.GradBytes = len(tr.Buckets()), 4*len(m.Grads())
	for s := range spec.Warmup + spec.Steps {
		sctx, cancel := context.WithTimeout(ctx, stepTimeout)
		start := time.Now()
		st, err := tr.Step(sctx, g)
		d := time.Since(start)
		cancel()
		if err != nil {
			return res, fmt.Errorf("%s rank %d: step %d: %w", spec.Model, spec.Rank, s, err)
		}
		if s >= spec.Warmup {
			res.StepS = append(res.StepS, d.Seconds())
			res.CommWaitS = append(res.CommWaitS, st.CommWait.Seconds())
		}
	}
	res.Digest = fmt.Sprintf("%016x", tr.Digest())
	return res, nil
}

// config is one measured configuration.
type config struct {
	model       string
	bucketBytes int
}

// Row is one configuration's measurement.
type Row struct {
	Model       string  `json:"model"`
	Transport   string  `json:"transport"`
	Links       string  `json:"links"`
	N           int     `json:"n"`
	Batch       int     `json:"batch"`
	BucketBytes int     `json:"bucket_bytes"`
	Buckets     int     `json:"buckets"`
	GradBytes   int     `json:"grad_bytes"`
	StepMS      float64 `json:"step_ms"` // median over timed steps of the slowest rank's step
	StepsPerS   float64 `json:"steps_per_s"`
	SamplesPerS float64 `json:"samples_per_s"`
	CommWaitMS  float64 `json:"comm_wait_ms"` // median, rank 0
	CPUPerStep  float64 `json:"cpu_s_per_step"`
}

type options struct {
	models    []string
	buckets   []int
	n         int
	batch     int
	warmup    int
	steps     int
	repeats   int
	chunk     int
	links     string
	transport string
	wire      string
	jsonPath  string
}

func parseFlags(args []string) (*options, error) {
	fs := flag.NewFlagSet("train", flag.ContinueOnError)
	o := &options{}
	models := fs.String("models", "mlp,cnn", "models: mlp, cnn")
	buckets := fs.String("bucket-bytes", "0,256KiB,1MiB,4MiB,25MiB", "gradient bucket sizes to compare, comma list (0: one all-reduce after backward; the trainer's --bucket-bytes)")
	fs.IntVar(&o.n, "n", 4, "peers")
	fs.IntVar(&o.batch, "batch", 32, "per-peer batch")
	fs.IntVar(&o.warmup, "warmup", 2, "untimed steps per configuration")
	fs.IntVar(&o.steps, "steps", 10, "timed steps per configuration (the median is reported)")
	fs.IntVar(&o.repeats, "repeats", 1, "runs of every configuration, taken in turn; the run with the median step time is reported")
	chunk := fs.String("chunk", "256KiB", "ring chunk")
	fs.StringVar(&o.links, "links", "loopback", "loopback, or a tc rate such as 50mbit: every peer in its own network namespace behind a tbf-shaped link (root); with --transport mem, the rate of every in-memory link")
	fs.StringVar(&o.transport, "transport", "tcp", "tcp (a process per peer over transport/tcp, the trainer's default), quic (a process per peer over transport/quic) or mem (all peers in this process over transport/mem)")
	fs.StringVar(&o.wire, "wire-dtype", "fp32", "gradient wire dtype: fp32, bf16, fp16")
	fs.StringVar(&o.jsonPath, "json", "", "also write the rows as JSON to this file")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	for _, m := range strings.Split(*models, ",") {
		if _, err := buildModel(strings.TrimSpace(m)); err != nil {
			return nil, err
		}
		o.models = append(o.models, strings.TrimSpace(m))
	}
	for _, b := range strings.Split(*buckets, ",") {
		v, err := parseSize(b)
		if err != nil {
			return nil, fmt.Errorf("--bucket-bytes: %w", err)
		}
		o.buckets = append(o.buckets, int(v))
	}
	c, err := parseSize(*chunk)
	if err != nil || c < 4 {
		return nil, fmt.Errorf("--chunk: bad size %q", *chunk)
	}
	o.chunk = int(c)
	if _, err := collective.ParseDType(o.wire); err != nil {
		return nil, err
	}
	switch {
	case o.n < 1 || o.batch < 1 || o.steps < 1 || o.repeats < 1 || o.warmup < 0:
		return nil, fmt.Errorf("need --n, --batch, --steps, --repeats ≥ 1 and --warmup ≥ 0")
	case o.transport != "tcp" && o.transport != "quic" && o.transport != "mem":
		return nil, fmt.Errorf("--transport must be tcp, quic or mem, not %q", o.transport)
	}
	if o.links != "loopback" {
		if _, err := netns.ParseRate(o.links); err != nil {
			return nil, err
		}
	}
	return o, nil
}

// parseSize reads "0", "N", "NKiB", "NMiB" (also K, M, KB, MB as binary
// units).
func parseSize(s string) (int64, error) {
	t := strings.TrimSpace(s)
	mult := int64(1)
	for _, u := range []struct {
		suf string
		m   int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"KB", 1 << 10}, {"MB", 1 << 20}, {"K", 1 << 10}, {"M", 1 << 20}, {"B", 1}} {
		if v, ok := strings.CutSuffix(t, u.suf); ok {
			t, mult = v, u.m
			break
		}
	}
	v, err := strconv.ParseInt(strings.TrimSpace(t), 10, 64)
	if err != nil || v < 0 {
		return 0, fmt.Errorf("bad size %q", s)
	}
	return v * mult, nil
}

// Run is "bench train".
func Run(ctx context.Context, args []string) error {
	o, err := parseFlags(args)
	if err != nil {
		return err
	}
	var run func(context.Context, config) ([]peerResult, float64, error)
	if o.transport == "mem" {
		run = func(ctx context.Context, c config) ([]peerResult, float64, error) { return runMem(ctx, o, c) }
	} else {
		q, err := newProcRunner(ctx, o)
		if err != nil {
			return err
		}
		defer q.Close()
		run = q.run
	}
	var cfgs []config
	for _, m := range o.models {
		for _, b := range o.buckets {
			cfgs = append(cfgs, config{model: m, bucketBytes: b})
		}
	}
	// Repeats go round all configurations, so that a change in the load of
	// the machine hits every configuration alike.
	runs := make([][]Row, len(cfgs))
	w := os.Stdout
	if o.repeats > 1 {
		fmt.Fprintf(w, "# every run (repeat %d of each configuration in turn)\n", o.repeats)
		printHeader(w)
	}
	for range o.repeats {
		for i, c := range cfgs {
			res, cpu, err := run(ctx, c)
			if err != nil {
				return err
			}
			row, err := summarize(o, c, res, cpu)
			if err != nil {
				return err
			}
			if o.repeats > 1 {
				printRow(w, "#", row)
			}
			runs[i] = append(runs[i], row)
		}
	}
	var rows []Row
	for _, rs := range runs {
		rows = append(rows, medianRow(rs))
	}
	if o.repeats > 1 {
		fmt.Fprintf(w, "# the run with the median step time of each configuration\n")
	}
	printHeader(w)
	for _, r := range rows {
		printRow(w, " ", r)
	}
	printRatios(w, rows)
	if o.jsonPath != "" {
		b, err := json.MarshalIndent(rows, "", "  ")
		if err != nil {
			return err
		}
		return os.WriteFile(o.jsonPath, b, 0o644)
	}
	return nil
}

// summarize turns the peers' results into a row: per timed step the
// slowest rank's time, then the median; the peers must end with identical
// parameters.
func summarize(o *options, c config, res []peerResult, cpu float64) (Row, error) {
	if len(res) == 0 || len(res[0].StepS) == 0 {
		return Row{}, fmt.Errorf("%s: no step measured", c.model)
	}
	for r, p := range res {
		if p.Digest != res[0].Digest {
			return Row{}, fmt.Errorf("%s bucket %d: rank %d's parameters differ from rank 0's (digest %s vs %s)", c.model, c.bucketBytes, r, p.Digest, res[0].Digest)
		}
	}
	steps := make([]float64, len(res[0].StepS))
	for _, p := range res {
		for i, s := range p.StepS {
			steps[i] = max(steps[i], s)
		}
	}
	med := median(steps)
	links := o.links
	if o.transport == "mem" && links == "loopback" {
		links = "unlimited"
	}
	row := Row{Model: c.model, Transport: o.transport, Links: links, N: o.n, Batch: o.batch, BucketBytes: c.bucketBytes,
		Buckets: res[0].Buckets, GradBytes: res[0].GradBytes, StepMS: med * 1e3, StepsPerS: 1 / med,
		SamplesPerS: float64(o.n*o.batch) / med, CommWaitMS: median(res[0].CommWaitS) * 1e3, CPUPerStep: cpu / float64(len(steps))}
	return row, nil
}

// medianRow is the run with the median step time.
func medianRow(rs []Row) Row {
	s := slices.Clone(rs)
	slices.SortFunc(s, func(a, b Row) int { return cmp.Compare(a.StepMS, b.StepMS) })
	return s[len(s)/2]
}

func median(x []float64) float64 {
	s := slices.Clone(x)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	return s[len(s)/2]
}

func bucketName(b int) string {
	switch {
	case b == 0:
		return "off"
	case b%(1<<20) == 0:
		return fmt.Sprintf("%dMiB", b>>20)
	case b%(1<<10) == 0:
		return fmt.Sprintf("%dKiB", b>>10)
	}
	return fmt.Sprintf("%dB", b)
}

func printHeader(w io.Writer) {
	fmt.Fprintf(w, "# %5s %5s %8s %3s %5s %7s %7s %9s %9s %8s %10s %12s %10s\n", "model", "trans", "links", "n", "batch",
		"bucket", "buckets", "grad(B)", "step(ms)", "steps/s", "samples/s", "commwait(ms)", "cpu-s/step")
}

func printRow(w io.Writer, lead string, r Row) {
	fmt.Fprintf(w, "%s %5s %5s %8s %3d %5d %7s %7d %9d %9.2f %8.3f %10.1f %12.2f %10.3f\n", lead, r.Model, r.Transport, r.Links, r.N, r.Batch,
		bucketName(r.BucketBytes), r.Buckets, r.GradBytes, r.StepMS, r.StepsPerS, r.SamplesPerS, r.CommWaitMS, r.CPUPerStep)
}

// printRatios compares every bucketed row with its model's unbucketed one.
func printRatios(w io.Writer, rows []Row) {
	fmt.Fprintln(w, "# ratios (steps/s, bucketed vs unbucketed)")
	for _, r := range rows {
		if r.BucketBytes == 0 {
			continue
		}
		for _, base := range rows {
			if base.Model == r.Model && base.BucketBytes == 0 {
				fmt.Fprintf(w, "# %s %s %s n=%d: bucket %s vs off: %.3f\n", r.Model, r.Transport, r.Links, r.N, bucketName(r.BucketBytes), r.StepsPerS/base.StepsPerS)
			}
		}
	}
}
