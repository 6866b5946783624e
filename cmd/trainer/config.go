package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"time"
)

// config is everything a node is told. Every flag has an environment twin,
// RINGTRAIN_<FLAG> with dashes as underscores; a flag given on the command
// line wins over its twin.
type config struct {
	Local int

	Seeds         string
	Listen        string
	Advertise     string
	QUICListen    string
	QUICAdvertise string
	NodeID        string
	Secret        string
	SecretFile    string
	Insecure      bool

	Model       string
	DataDir     string
	Batch       int
	Optimizer   string
	LR          float64
	LRScaling   bool
	WarmupSteps int
	Epochs      int
	Steps       int
	MinPeers    int
	EvalEvery   int
	Seed        uint64
	Chunk       int

	CheckpointDir   string
	CheckpointEvery int
	Resume          bool

	MetricsAddr string
	LogFormat   string
	LogSteps    bool
	Progress    string
	SummaryJSON string
	Timeout     time.Duration
}

const envPrefix = "RINGTRAIN_"

func envName(flagName string) string {
	return envPrefix + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

func newFlagSet(c *config, out io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("trainer", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.IntVar(&c.Local, "local", 0, "start N peers on this machine as separate processes over QUIC on 127.0.0.1 with an ephemeral secret, train, and print a summary")

	fs.StringVar(&c.Seeds, "seeds", "", "comma-separated gossip addresses (host:port) of peers to join; empty: start a new cluster")
	fs.StringVar(&c.Listen, "listen", "0.0.0.0:7946", "gossip listen address (host:port)")
	fs.StringVar(&c.Advertise, "advertise", "", "gossip address other peers use to reach this node (default: the listen address, or this host's address)")
	fs.StringVar(&c.QUICListen, "quic-listen", "0.0.0.0:7947", "QUIC (UDP) listen address for gradients")
	fs.StringVar(&c.QUICAdvertise, "quic-advertise", "", "QUIC address other peers dial (default: derived like --advertise)")
	fs.StringVar(&c.NodeID, "node-id", "", "unique node ID (default: hostname-pid)")
	fs.StringVar(&c.Secret, "secret", "", "cluster secret: derives the gossip key and the TLS CA (prefer --secret-file or the environment)")
	fs.StringVar(&c.SecretFile, "secret-file", "", "file holding the cluster secret")
	fs.BoolVar(&c.Insecure, "insecure", false, "allow running across hosts without a cluster secret (anyone who can reach the ports can join)")

	fs.StringVar(&c.Model, "model", "mlp", "model: mlp (784-256-128-10) or cnn (LeNet-like)")
	fs.StringVar(&c.DataDir, "data", "", "directory with MNIST IDX files (default: the embedded copy)")
	fs.IntVar(&c.Batch, "batch", 64, "per-peer batch size")
	fs.StringVar(&c.Optimizer, "optimizer", "momentum", "optimizer: sgd, momentum, nesterov, adam, adamw")
	fs.Float64Var(&c.LR, "lr", 0.05, "learning rate for one peer's batch (scaled by the number of peers with --lr-scaling)")
	fs.BoolVar(&c.LRScaling, "lr-scaling", true, "linear learning-rate scaling with the global batch, with warmup after a change of peers")
	fs.IntVar(&c.WarmupSteps, "warmup-steps", 100, "steps of linear warmup at the start and after the number of peers changes")
	fs.IntVar(&c.Epochs, "epochs", 3, "data epochs to train (ignored when --steps is set)")
	fs.IntVar(&c.Steps, "steps", 0, "global steps to train (0: use --epochs)")
	fs.IntVar(&c.MinPeers, "min-peers", 1, "peers to wait for before the first step")
	fs.IntVar(&c.EvalEvery, "eval-every", 0, "evaluate on the test set every N steps (0: at the end of each data epoch)")
	fs.Uint64Var(&c.Seed, "seed", 1, "seed for initialization and data order (identical on every peer)")
	fs.IntVar(&c.Chunk, "chunk-bytes", 256<<10, "all-reduce pipelining chunk size in bytes")

	fs.StringVar(&c.CheckpointDir, "checkpoint-dir", "", "directory for checkpoints (safetensors); empty: no checkpoints")
	fs.IntVar(&c.CheckpointEvery, "checkpoint-every", 200, "write a checkpoint every N steps (and at the end)")
	fs.BoolVar(&c.Resume, "resume", false, "resume from the latest checkpoint in --checkpoint-dir")

	fs.StringVar(&c.MetricsAddr, "metrics-addr", "", "serve Prometheus /metrics on this address (e.g. :9100); empty: off")
	fs.StringVar(&c.LogFormat, "log-format", "text", "log format: text or json")
	fs.BoolVar(&c.LogSteps, "log-steps", false, "log every applied step (step, data epoch, sample positions, membership epoch, rank) as a \"step\" line")
	fs.StringVar(&c.Progress, "progress", "auto", "progress display: auto (bar on a terminal, log lines otherwise), bar, log")
	fs.StringVar(&c.SummaryJSON, "summary-json", "", "write the final figures (accuracy, steps, peers, wall time, samples/s, digest) to this file")
	fs.DurationVar(&c.Timeout, "op-timeout", 2*time.Minute, "deadline of one collective operation or agreement round")

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
	return c, c.validate()
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
	if c.MinPeers < 1 {
		errs = append(errs, fmt.Errorf("--min-peers %d: must be at least 1", c.MinPeers))
	}
	if c.Local < 0 || c.Local > 64 {
		errs = append(errs, fmt.Errorf("--local %d: want 1..64", c.Local))
	}
	if c.Resume && c.CheckpointDir == "" {
		errs = append(errs, errors.New("--resume needs --checkpoint-dir"))
	}
	if c.Secret != "" && c.SecretFile != "" {
		errs = append(errs, errors.New("give the secret by --secret or --secret-file, not both"))
	}
	return errors.Join(errs...)
}

// secret returns the cluster secret, or nil when none was given.
func (c *config) secret() ([]byte, error) {
	if c.SecretFile != "" {
		b, err := os.ReadFile(c.SecretFile)
		if err != nil {
			return nil, fmt.Errorf("--secret-file: %w", err)
		}
		s := strings.TrimSpace(string(b))
		if s == "" {
			return nil, fmt.Errorf("--secret-file %s is empty", c.SecretFile)
		}
		return []byte(s), nil
	}
	if c.Secret != "" {
		return []byte(c.Secret), nil
	}
	return nil, nil
}

// loopbackOnly reports whether every address this node uses or contacts is
// on the loopback interface, where running without a secret is harmless.
func (c *config) loopbackOnly() bool {
	addrs := []string{c.Listen, c.Advertise, c.QUICListen, c.QUICAdvertise}
	if c.Seeds != "" {
		addrs = append(addrs, strings.Split(c.Seeds, ",")...)
	}
	for _, a := range addrs {
		if a == "" {
			continue
		}
		host, _, err := net.SplitHostPort(strings.TrimSpace(a))
		if err != nil {
			return false
		}
		if host == "localhost" {
			continue
		}
		ip := net.ParseIP(host)
		if ip == nil || !ip.IsLoopback() {
			return false
		}
	}
	return true
}
