package main

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ringtrain/ringtrain/data"
	"github.com/ringtrain/ringtrain/internal/secret"
	"github.com/ringtrain/ringtrain/membership"
	"github.com/ringtrain/ringtrain/model"
	"github.com/ringtrain/ringtrain/optim"
	"github.com/ringtrain/ringtrain/train"
	"github.com/ringtrain/ringtrain/transport/quic"
)

// insecureSecret is used on loopback, or across hosts with --insecure,
// when no secret is given: traffic is still encrypted, but anyone who can
// reach the ports can join.
const insecureSecret = "ringtrain-insecure-default-secret"

// The QUIC keep-alive period and idle timeout (see runNode).
const (
	quicKeepAlive   = time.Second
	quicIdleTimeout = 5 * time.Second
)

// checkpointFile names this node's checkpoint in --checkpoint-dir (the
// node ID keeps nodes that share a directory apart); it is replaced
// atomically at each write.
func checkpointFile(node string) string { return "checkpoint-" + node + ".safetensors" }

// runNode runs one trainer node until the job ends, it leaves, or ctx ends.
func runNode(ctx context.Context, c *config, leave <-chan struct{}, stderr io.Writer, tty bool, log *slog.Logger) error {
	start := time.Now()
	id := c.NodeID
	if id == "" {
		h, _ := os.Hostname()
		id = fmt.Sprintf("%s-%d", h, os.Getpid())
	}
	base := log // quic and membership name the node themselves
	log = log.With("node", id)

	sec, err := c.secret()
	if err != nil {
		return err
	}
	if sec == nil {
		if !c.loopbackOnly() && !c.Insecure {
			return errors.New("no cluster secret (--secret-file, --secret or RINGTRAIN_SECRET) and the addresses are not all loopback: " +
				"refusing to run unauthenticated across hosts; give a secret, or --insecure to accept that anyone who can reach the ports can join")
		}
		log.Warn("no cluster secret: using the well-known insecure one (traffic is encrypted, but anyone who can reach the ports can join)")
		sec = []byte(insecureSecret)
	}
	cluster, err := secret.New(sec)
	if err != nil {
		return fmt.Errorf("cluster secret: %w", err)
	}

	// Model, data and trainer: identical on every node, from the seed.
	var m *model.Model
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
	}
	if c.Resume {
		meta, err := tr.ReadCheckpoint(ckpt)
		switch {
		case errors.Is(err, os.ErrNotExist):
			log.Warn("no checkpoint to resume from: starting fresh (peers that have one will sync this node)", "path", ckpt)
		case err != nil:
			return fmt.Errorf("resume: %w", err)
		default:
			log.Info("resumed", "path", ckpt, "step", meta["step"], "data_epoch", meta["data_epoch"])
		}
	}

	// QUIC's idle timeout is the transport's own failure detector, a
	// backstop behind gossip's (which declares a dead peer within about
	// 2 s, see membership.LANConfig, and aborts the collectives waiting on
	// it): a link silent for longer than gossip tolerates is lost anyway.
	// The keep-alive keeps idle links (during compute, between
	// non-neighbours) from reaching it.
	ep, err := quic.Listen(quic.Config{ID: id, Cluster: cluster, ListenAddr: c.QUICListen, Logger: base.With("component", "quic"),
		KeepAlive: quicKeepAlive, IdleTimeout: quicIdleTimeout})
	if err != nil {
		return fmt.Errorf("quic: %w", err)
	}
	defer ep.Close()
	quicAddr, err := advertised(c.QUICAdvertise, c.Advertise, ep.Addr())
	if err != nil {
		return fmt.Errorf("--quic-advertise: %w", err)
	}

	mc := membership.LANConfig()
	if c.loopbackOnly() {
		mc = membership.LocalConfig()
	}
	host, port, err := splitHostPort(c.Listen)
	if err != nil {
		return fmt.Errorf("--listen: %w", err)
	}
	mc.Gossip.BindAddr, mc.Gossip.BindPort, mc.Gossip.AdvertisePort = host, port, port
	if c.Advertise != "" {
		ah, ap, err := splitHostPort(c.Advertise)
		if err == nil {
			ah, err = resolveHost(ah) // memberlist advertises IP addresses only
		}
		if err != nil {
			return fmt.Errorf("--advertise: %w", err)
		}
		mc.Gossip.AdvertiseAddr, mc.Gossip.AdvertisePort = ah, ap
	}
	fp := tr.Fingerprint()
	mc.ID = id
	mc.QUICAddr = quicAddr
	mc.Fingerprint = hex.EncodeToString(fp[:8])
	mc.Seeds = splitList(c.Seeds)
	mc.GossipKey = cluster.GossipKey()
	mc.Endpoint = ep
	mc.MinMembers = c.MinPeers
	mc.Snapshot = tr.MarshalState
	mc.Restore = tr.UnmarshalState
	mc.OnRoster = func(r membership.Roster) {
		for _, p := range r.Peers {
			if p.QUICAddr != "" && p.ID != id {
				ep.AddPeer(p.ID, p.QUICAddr)
			}
		}
	}
	mc.Logger = base.With("component", "membership")
	mem, err := membership.New(ctx, mc)
	if err != nil {
		return err
	}
	defer mem.Close()
	log.Info("listening", "gossip", mem.GossipAddr(), "quic", quicAddr, "model", c.Model, "fingerprint", mc.Fingerprint, "seeds", c.Seeds)

	met := newMetrics(id)
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
		Trainer: tr, Member: mem, Endpoint: ep,
		ChunkBytes: c.Chunk, OpTimeout: c.Timeout,
		Steps: uint64(c.Steps), Epochs: c.Epochs,
		Test: testSet, EvalEvery: c.EvalEvery, DigestEvery: 50,
		CheckpointEvery: c.CheckpointEvery, Leave: leave, Log: log,
		OnEpoch: func(e membership.Epoch) {
			// Stale chunks of aborted operations in older epochs are
			// refused and freed from now on.
			ep.SetEpoch(e.Number)
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
			err := tr.WriteCheckpoint(ckpt, map[string]string{"membership_epoch": strconv.FormatUint(e.Number, 10), "node": id})
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
	gb := c.MinPeers * c.Batch
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

func splitList(s string) []string {
	var out []string
	for _, x := range strings.Split(s, ",") {
		if x = strings.TrimSpace(x); x != "" {
			out = append(out, x)
		}
	}
	return out
}

func splitHostPort(a string) (string, int, error) {
	h, p, err := net.SplitHostPort(a)
	if err != nil {
		return "", 0, err
	}
	port, err := strconv.Atoi(p)
	if err != nil || port < 0 || port > 65535 {
		return "", 0, fmt.Errorf("bad port in %q", a)
	}
	return h, port, nil
}

// resolveHost returns host as an IP address, looking a name up (a Slurm or
// Kubernetes host name) and preferring a non-loopback IPv4 address.
func resolveHost(host string) (string, error) {
	if net.ParseIP(host) != nil {
		return host, nil
	}
	ips, err := net.LookupIP(host)
	if err != nil {
		return "", err
	}
	if len(ips) == 0 {
		return "", fmt.Errorf("%s has no address", host)
	}
	for _, ip := range ips {
		if ip.To4() != nil && !ip.IsLoopback() {
			return ip.String(), nil
		}
	}
	return ips[0].String(), nil
}

// advertised returns the QUIC address peers should dial: the explicit one;
// else the gossip advertise host with the bound port; else the bound one
// with an unspecified host replaced by this host's first non-loopback
// address.
func advertised(explicit, gossipAdvertise, bound string) (string, error) {
	if explicit != "" {
		return explicit, nil
	}
	h, p, err := net.SplitHostPort(bound)
	if err != nil {
		return "", err
	}
	if gossipAdvertise != "" {
		gh, _, err := net.SplitHostPort(gossipAdvertise)
		if err != nil {
			return "", err
		}
		return net.JoinHostPort(gh, p), nil
	}
	if ip := net.ParseIP(h); ip != nil && !ip.IsUnspecified() {
		return bound, nil
	}
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return "", err
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && !n.IP.IsLoopback() && n.IP.To4() != nil {
			return net.JoinHostPort(n.IP.String(), p), nil
		}
	}
	return net.JoinHostPort("127.0.0.1", p), nil
}
