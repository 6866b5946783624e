package main

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ringtrain/ringtrain/data"
	"github.com/ringtrain/ringtrain/membership"
	"github.com/ringtrain/ringtrain/model"
	rtnode "github.com/ringtrain/ringtrain/node"
	"github.com/ringtrain/ringtrain/optim"
	"github.com/ringtrain/ringtrain/train"
)

// checkpointFile names this node's checkpoint in --checkpoint-dir (the
// node ID keeps nodes that share a directory apart); it is replaced
// atomically at each write.
func checkpointFile(node string) string { return "checkpoint-" + node + ".safetensors" }

// agreementFile keeps the node's membership agreement state beside its
// checkpoint (node.Config.StateFile).
func agreementFile(node string) string { return "agreement-" + node + ".json" }

// runNode runs one trainer node until the job ends, it leaves, or ctx ends.
func runNode(ctx context.Context, c *config, leave <-chan struct{}, stderr io.Writer, tty bool, log *slog.Logger) error {
	start := time.Now()
	nc := c.Node
	if nc.ID == "" {
		h, _ := os.Hostname()
		nc.ID = fmt.Sprintf("%s-%d", h, os.Getpid())
	}
	id := nc.ID
	nc.Logger = log // the node, quic and membership name the node themselves
	log = log.With("node", id)

	// Model, data and trainer: identical on every node, from the seed.
	var (
		m   *model.Model
		err error
	)
	switch c.Model {
	case "mlp":
		m, err = model.NewMLP(c.Seed)
	case "cnn":
		m, err = model.NewCNN(c.Seed)
	}
	if err != nil {
		return err
	}
	trainSet, testSet, err := data.MNIST(c.DataDir)
	if err != nil {
		return fmt.Errorf("data: %w", err)
	}
	tr, err := train.New(train.Config{
		Model:        m,
		Optimizer:    newOptimizer(c.Optimizer),
		LR:           optim.Scaler{BaseLR: c.LR, BaseBatch: c.Batch, Warmup: int64(c.WarmupSteps), Fixed: !c.LRScaling},
		Schedule:     optim.Warmup{Steps: int64(c.WarmupSteps), Start: 0.1, Then: optim.Cosine{Total: plannedSteps(c, trainSet.Len()), Floor: 0.01}},
		Train:        trainSet,
		BatchPerPeer: c.Batch,
		Seed:         c.Seed,
		Wire:         c.wire(),
		BucketBytes:  c.BucketBytes,
	})
	if err != nil {
		return err
	}
	ckpt := ""
	if c.CheckpointDir != "" {
		if err := os.MkdirAll(c.CheckpointDir, 0o755); err != nil {
			return fmt.Errorf("checkpoint dir: %w", err)
		}
		ckpt = filepath.Join(c.CheckpointDir, checkpointFile(id))
		// The agreement state is written at every epoch change, not at
		// checkpoints: a restarted node keeps the promises it made.
		if nc.StateFile == "" {
			nc.StateFile = filepath.Join(c.CheckpointDir, agreementFile(id))
			if !c.Resume {
				// A run that does not resume starts as a fresh node (an
				// explicit --state-file is the operator's to remove).
				if err := os.Remove(nc.StateFile); err != nil && !errors.Is(err, os.ErrNotExist) {
					return fmt.Errorf("checkpoint dir: %w", err)
				}
			}
		}
	}
	if c.Resume {
		meta, err := tr.ReadCheckpoint(ckpt)
		switch {
		case errors.Is(err, os.ErrNotExist):
			log.Warn("no checkpoint to resume from: starting fresh (peers that have one will sync this node)", "path", ckpt)
		case err != nil:
			return fmt.Errorf("resume: %w", err)
		default:
			// The epoch this node held: it re-forms that epoch's
			// successor with a majority of its members, never a first
			// epoch of its own (zero from checkpoints older than it).
			held, err := train.ParseHeld(meta)
			if err != nil {
				return fmt.Errorf("resume: %w", err)
			}
			nc.Held = held
			log.Info("resumed", "path", ckpt, "step", meta["step"], "data_epoch", meta["data_epoch"], "held_epoch", held.Number)
		}
	}

	// Gossip refuses a peer whose fingerprint differs: the job's (model,
	// optimizer, batch, data) and how its steps all-reduce (the wire
	// type and the bucket size decide the operations and their sizes, so
	// peers that differ would fail every step rather than train).
	fp := tr.Fingerprint()
	nc.Fingerprint = fmt.Sprintf("%s wire=%s buckets=%d", hex.EncodeToString(fp[:8]), c.wire(), c.BucketBytes)
	nc.Snapshot, nc.Restore = tr.MarshalState, tr.UnmarshalState
	n, err := rtnode.Start(ctx, nc)
	if errors.Is(err, rtnode.ErrNoSecret) {
		return fmt.Errorf("%w (give one by --secret-file, --secret or RINGTRAIN_SECRET, or --insecure)", err)
	}
	if err != nil {
		return err
	}
	defer n.Close()
	log.Info("listening", "gossip", n.GossipAddr(), "quic", n.QUICAddr(), "model", c.Model, "fingerprint", nc.Fingerprint, "seeds", strings.Join(nc.Seeds, ","))

	met := newMetrics(id)
	met.watchConnections(id, func() int { return len(n.Connections()) })
	if c.MetricsAddr != "" {
		addr, err := met.serve(ctx, c.MetricsAddr, log)
		if err != nil {
			return err
		}
		log.Info("metrics", "addr", "http://"+addr+"/metrics")
	}
	var rep reporter = &logReporter{log: log, interval: 2 * time.Second}
	if c.Progress == "bar" || (c.Progress == "auto" && tty) {
		rep = newBarReporter(stderr, log, 1)
	}
	defer rep.close()

	p := progress{Node: id}
	jc := train.JobConfig{
		Trainer: tr, Node: n,
		Steps: uint64(c.Steps), Epochs: c.Epochs,
		Test: testSet, EvalEvery: c.EvalEvery, DigestEvery: 50,
		CheckpointEvery: c.CheckpointEvery, Leave: leave, Log: log,
		OnEpoch: func(e membership.Epoch) {
			met.peers.Set(float64(len(e.Members)))
			met.epoch.Set(float64(e.Number))
			rep.message("membership epoch", "epoch", e.Number, "members", strings.Join(e.Members, ","))
		},
		OnStep: func(s train.JobStep) {
			met.steps.Inc()
			met.stepSeconds.Observe(s.StepTime.Seconds())
			met.arSeconds.Observe(s.CommTime.Seconds())
			n := float64(s.Peers)
			if s.CommTime > 0 {
				met.busbw.Set(float64(s.CommBytes) / s.CommTime.Seconds() * 2 * (n - 1) / n)
			}
			moved := float64(s.CommBytes) * 2 * (n - 1) / n
			met.bytesSent.Add(moved)
			met.bytesRecv.Add(moved)
			met.loss.Set(s.Loss)
			met.samplesPerS.Set(s.SamplesPerSecond())
			if c.LogSteps {
				// The time of this line is when the step was applied:
				// failure tests measure recovery with it, and the
				// positions show that no sample is used twice.
				log.Info("step", "step", s.Step, "data_epoch", s.StepStats.Epoch, "lo", s.Share.Lo, "hi", s.Share.Hi, "global", s.Share.Global,
					"membership_epoch", s.Epoch.Number, "peers", s.Peers, "rank", slices.Index(s.Epoch.Members, id))
			}
			p.Step, p.TotalSteps, p.DataEpoch, p.Loss = int(s.Step)+1, int(s.TotalSteps), int(s.StepStats.Epoch), s.Loss
			p.SamplesPerS, p.Peers, p.MemberEpoch, p.ETA = s.SamplesPerSecond(), s.Peers, s.Epoch.Number, s.ETA()
			rep.update(p)
		},
		OnStepFailed: func(error) { met.failedSteps.Inc() },
		OnEval: func(e train.JobEval) {
			met.accuracy.Set(e.Accuracy)
			p.Accuracy = e.Accuracy
			rep.message("evaluation", "step", e.Step, "test_accuracy", e.Accuracy, "test_loss", e.Loss)
		},
	}
	if ckpt != "" {
		jc.Checkpoint = func(step uint64, e membership.Epoch) error {
			err := tr.WriteCheckpoint(ckpt, map[string]string{"membership_epoch": strconv.FormatUint(e.Number, 10), "node": id,
				train.HeldKey: train.HeldMeta(n.Held())})
			if err == nil {
				met.checkpointed.Set(float64(step))
			}
			return err
		}
	}
	res, err := train.RunJob(ctx, jc)
	if err != nil {
		return err
	}
	wall := time.Since(start)
	rep.update(p)
	s := summary{
		Node: id, TestAccuracy: res.Final.Accuracy, Steps: res.Steps, Peers: len(res.Epoch.Members), MemberEpoch: res.Epoch.Number,
		WallSeconds: wall.Seconds(), SamplesPerSec: float64(res.Samples) / wall.Seconds(), Digest: fmt.Sprintf("%016x", res.Digest),
		Model: c.Model, FailedSteps: res.FailedSteps, Checkpoint: ckpt, Left: res.Left,
	}
	log.Info("done", "steps", s.Steps, "test_accuracy", s.TestAccuracy, "peers", s.Peers, "wall_s", round(s.WallSeconds, 1), "digest", s.Digest, "left", s.Left)
	if c.SummaryJSON != "" {
		b, _ := json.MarshalIndent(s, "", "  ")
		if err := os.WriteFile(c.SummaryJSON, b, 0o644); err != nil {
			return fmt.Errorf("--summary-json: %w", err)
		}
	}
	return nil
}

// plannedSteps is the length of the cosine schedule: the job's steps with
// --min-peers peers (if more join, the job ends sooner and the tail of the
// schedule stays at its floor).
func plannedSteps(c *config, n int) int64 {
	if c.Steps > 0 {
		return int64(c.Steps)
	}
	gb := max(c.Node.MinPeers, 1) * c.Batch
	return int64(c.Epochs * ((n + gb - 1) / gb))
}

func newOptimizer(name string) optim.Optimizer {
	switch name {
	case "sgd":
		return &optim.SGD{}
	case "nesterov":
		return &optim.SGD{Momentum: 0.9, Nesterov: true, WeightDecay: 1e-4}
	case "adam":
		return &optim.Adam{}
	case "adamw":
		return optim.NewAdamW(1e-2)
	}
	return &optim.SGD{Momentum: 0.9, WeightDecay: 1e-4}
}
