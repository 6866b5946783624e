package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/ringtrain/ringtrain/collective"
	rtnode "github.com/ringtrain/ringtrain/node"
)

// config is everything a node is told. Every flag has an environment twin,
// RINGTRAIN_<FLAG> with dashes as underscores; a flag given on the command
// line wins over its twin.
type config struct {
	Local int

	// Node is what the node's flags (rtnode.Keys: seeds, listen, secret,
	// min-peers, ...) say, read by rtnode.ConfigFromMap from nodeKV.
	Node   rtnode.Config
	nodeKV map[string]string

	Model       string
	DataDir     string
	Batch       int
	Optimizer   string
	LR          float64
	LRScaling   bool
	WarmupSteps int
	Epochs      int
	Steps       int
	EvalEvery   int
	Seed        uint64
	WireDType   string
	BucketBytes int

	CheckpointDir   string
	CheckpointEvery int
	Resume          bool

	MetricsAddr string
	LogFormat   string
	LogSteps    bool
	Progress    string
	SummaryJSON string
}

// nodeDefault is the trainer's default for a node key: fixed ports on
// every interface, as a cluster deployment wants (the library's own
// defaults are loopback and free ports).
func nodeDefault(key string) string {
	switch key {
	case "listen":
		return "0.0.0.0:7946"
	case "quic-listen":
		return "0.0.0.0:7947"
	case "min-peers", "lanes":
		return "1"
	case "chunk-bytes":
		return strconv.Itoa(256 << 10)
	case "op-timeout":
		return (2 * time.Minute).String()
	}
	return ""
}

// notFlag: node keys the trainer sets itself (the fingerprint is the
// model's).
func notFlag(key string) bool { return key == "fingerprint" }

// nodeFlag is a flag.Value that stores a node key's text in the config's
// nodeKV; rtnode.ConfigFromMap parses and checks it after flags and
// environment are read, so the trainer and the C ABI share one parser.
type nodeFlag struct {
	kv   map[string]string
	name string
	bool bool
}

func (f *nodeFlag) String() string {
	if f == nil || f.kv == nil {
		return ""
	}
	return f.kv[f.name]
}
func (f *nodeFlag) Set(v string) error { f.kv[f.name] = v; return nil }
func (f *nodeFlag) IsBoolFlag() bool   { return f.bool }

const envPrefix = "RINGTRAIN_"

func envName(flagName string) string {
	return envPrefix + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

func newFlagSet(c *config, out io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("trainer", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.IntVar(&c.Local, "local", 0, "start N peers on this machine as separate processes over QUIC on 127.0.0.1 with an ephemeral secret, train, and print a summary")

	c.nodeKV = map[string]string{}
	for _, k := range rtnode.Keys() {
		if notFlag(k.Name) {
			continue
		}
		c.nodeKV[k.Name] = nodeDefault(k.Name)
		fs.Var(&nodeFlag{kv: c.nodeKV, name: k.Name, bool: k.Bool}, k.Name, k.Usage)
	}

	fs.StringVar(&c.Model, "model", "mlp", "model: mlp (784-256-128-10) or cnn (LeNet-like)")
	fs.StringVar(&c.DataDir, "data", "", "directory with MNIST IDX files (default: the embedded copy)")
	fs.IntVar(&c.Batch, "batch", 64, "per-peer batch size")
	fs.StringVar(&c.Optimizer, "optimizer", "momentum", "optimizer: sgd, momentum, nesterov, adam, adamw")
	fs.Float64Var(&c.LR, "lr", 0.05, "learning rate for one peer's batch (scaled by the number of peers with --lr-scaling)")
	fs.BoolVar(&c.LRScaling, "lr-scaling", true, "linear learning-rate scaling with the global batch, with warmup after a change of peers")
	fs.IntVar(&c.WarmupSteps, "warmup-steps", 100, "steps of linear warmup at the start and after the number of peers changes")
	fs.IntVar(&c.Epochs, "epochs", 3, "data epochs to train (ignored when --steps is set)")
	fs.IntVar(&c.Steps, "steps", 0, "global steps to train (0: use --epochs)")
	fs.IntVar(&c.EvalEvery, "eval-every", 0, "evaluate on the test set every N steps (0: at the end of each data epoch)")
	fs.Uint64Var(&c.Seed, "seed", 1, "seed for initialization and data order (identical on every peer)")
	fs.StringVar(&c.WireDType, "wire-dtype", "fp32", "gradient element type on the wire: fp32, bf16 or fp16 (reduced in float32 on every hop)")
	fs.IntVar(&c.BucketBytes, "bucket-bytes", collective.DefaultBucketBytes, "reduce gradients in buckets of about this many float32 bytes, each launched from backward as soon as its layers are done (25 MiB: PyTorch DDP's bucket_cap_mb; 0: one all-reduce after backward)")

	fs.StringVar(&c.CheckpointDir, "checkpoint-dir", "", "directory for checkpoints (safetensors); empty: no checkpoints")
	fs.IntVar(&c.CheckpointEvery, "checkpoint-every", 200, "write a checkpoint every N steps (and at the end)")
	fs.BoolVar(&c.Resume, "resume", false, "resume from the latest checkpoint in --checkpoint-dir")

	fs.StringVar(&c.MetricsAddr, "metrics-addr", "", "serve Prometheus /metrics on this address (e.g. :9100); empty: off")
	fs.StringVar(&c.LogFormat, "log-format", "text", "log format: text or json")
	fs.BoolVar(&c.LogSteps, "log-steps", false, "log every applied step (step, data epoch, sample positions, membership epoch, rank) as a \"step\" line")
	fs.StringVar(&c.Progress, "progress", "auto", "progress display: auto (bar on a terminal, log lines otherwise), bar, log")
	fs.StringVar(&c.SummaryJSON, "summary-json", "", "write the final figures (accuracy, steps, peers, wall time, samples/s, digest) to this file")

	fs.Usage = func() {
		fmt.Fprintf(out, `ringtrain trainer: data-parallel training over a ring all-reduce.

Start one trainer per node with the same --seeds and secret, or try it on one
machine with:  trainer --local 4

Every flag can also be set in the environment as RINGTRAIN_<FLAG>
(upper case, dashes as underscores), e.g. RINGTRAIN_SEEDS, RINGTRAIN_SECRET.

Flags:
`)
		fs.VisitAll(func(f *flag.Flag) {
			def := ""
			if f.DefValue != "" && f.DefValue != "0" && f.DefValue != "false" {
				def = fmt.Sprintf(" (default %s)", f.DefValue)
			}
			fmt.Fprintf(out, "  --%s\n    \t%s%s\n    \tenv %s\n", f.Name, f.Usage, def, envName(f.Name))
		})
	}
	return fs
}

// parseConfig reads flags, then fills unset flags from the environment.
func parseConfig(args []string, getenv func(string) string, out io.Writer) (*config, error) {
	c := &config{}
	fs := newFlagSet(c, out)
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments %q (see --help)", fs.Args())
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	var errs []error
	fs.VisitAll(func(f *flag.Flag) {
		if set[f.Name] {
			return
		}
		if v := getenv(envName(f.Name)); v != "" {
			if err := fs.Set(f.Name, v); err != nil {
				errs = append(errs, fmt.Errorf("%s=%q: %w", envName(f.Name), v, err))
			}
		}
	})
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	nc, err := rtnode.ConfigFromMap(c.nodeKV)
	for _, e := range unjoin(err) {
		var ke *rtnode.KeyError
		if !errors.As(e, &ke) {
			errs = append(errs, e)
			continue
		}
		// Name the key as the user gave it: flag, environment or default.
		name, val := "--"+ke.Key, fmt.Sprintf(" %q", ke.Value)
		if !set[ke.Key] && getenv(envName(ke.Key)) != "" {
			name, val = envName(ke.Key), fmt.Sprintf("=%q", ke.Value)
		}
		if ke.Key == "secret" {
			val = ""
		}
		errs = append(errs, fmt.Errorf("%s%s: %w", name, val, ke.Err))
	}
	c.Node = nc
	errs = append(errs, c.validate())
	return c, errors.Join(errs...)
}

// unjoin lists the errors errors.Join combined (or err alone).
func unjoin(err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

func (c *config) validate() error {
	var errs []error
	switch c.Model {
	case "mlp", "cnn":
	default:
		errs = append(errs, fmt.Errorf("--model %q: want mlp or cnn", c.Model))
	}
	switch c.Optimizer {
	case "sgd", "momentum", "nesterov", "adam", "adamw":
	default:
		errs = append(errs, fmt.Errorf("--optimizer %q: want sgd, momentum, nesterov, adam or adamw", c.Optimizer))
	}
	switch c.LogFormat {
	case "text", "json":
	default:
		errs = append(errs, fmt.Errorf("--log-format %q: want text or json", c.LogFormat))
	}
	switch c.Progress {
	case "auto", "bar", "log":
	default:
		errs = append(errs, fmt.Errorf("--progress %q: want auto, bar or log", c.Progress))
	}
	if c.Batch <= 0 {
		errs = append(errs, fmt.Errorf("--batch %d: must be positive", c.Batch))
	}
	if c.LR <= 0 {
		errs = append(errs, fmt.Errorf("--lr %g: must be positive", c.LR))
	}
	if c.Steps < 0 || c.Epochs < 0 || (c.Steps == 0 && c.Epochs == 0) {
		errs = append(errs, errors.New("give a positive --steps or --epochs"))
	}
	if c.Local < 0 || c.Local > 64 {
		errs = append(errs, fmt.Errorf("--local %d: want 1..64", c.Local))
	}
	if _, err := collective.ParseDType(c.WireDType); err != nil {
		errs = append(errs, fmt.Errorf("--wire-dtype: %w", err))
	}
	if c.BucketBytes < 0 {
		errs = append(errs, fmt.Errorf("--bucket-bytes %d: must be 0 (unbucketed) or positive", c.BucketBytes))
	}
	if c.Resume && c.CheckpointDir == "" {
		errs = append(errs, errors.New("--resume needs --checkpoint-dir"))
	}
	return errors.Join(errs...)
}

// wire is the validated --wire-dtype.
func (c *config) wire() collective.DType {
	d, _ := collective.ParseDType(c.WireDType) // validate rejected bad names
	return d
}
