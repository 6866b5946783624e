package trainstep

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"sync"
	"time"

	"github.com/ringtrain/ringtrain/bench/cluster"
	"github.com/ringtrain/ringtrain/bench/netns"
	"github.com/ringtrain/ringtrain/collective"
	"github.com/ringtrain/ringtrain/data"
	"github.com/ringtrain/ringtrain/transport"
	"github.com/ringtrain/ringtrain/transport/mem"
)

func (o *options) spec(c config, rank int, members []string) peerSpec {
	return peerSpec{Model: c.model, Rank: rank, Members: members, Chunk: o.chunk, Batch: o.batch, Warmup: o.warmup,
		Steps: o.steps, BucketBytes: c.bucketBytes, Wire: o.wire}
}

func memberIDs(n int) []string {
	m := make([]string, n)
	for i := range m {
		m[i] = fmt.Sprintf("p%d", i)
	}
	return m
}

// runMem runs one configuration with every peer in this process over
// transport/mem, each link limited to --links when that is a rate. It
// returns the peers' results and the process CPU over the run.
func runMem(ctx context.Context, o *options, c config) ([]peerResult, float64, error) {
	set, err := data.MNISTSplit("", "t10k")
	if err != nil {
		return nil, 0, err
	}
	members := memberIDs(o.n)
	net := mem.NewNetwork()
	eps, err := net.Endpoints(members...)
	if err != nil {
		return nil, 0, err
	}
	defer func() {
		for _, ep := range eps {
			ep.Close()
		}
	}()
	if o.links != "loopback" {
		bits, _ := netns.ParseRate(o.links) // checked by parseFlags
		for i := range members {
			for j := i + 1; j < len(members); j++ {
				net.SetLink(members[i], members[j], mem.Link{Rate: bits / 8})
			}
		}
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	res := make([]peerResult, o.n)
	errs := make([]error, o.n)
	cpu0 := cluster.SelfCPU()
	var wg sync.WaitGroup
	for r := range o.n {
		wg.Go(func() {
			defer func() {
				if errs[r] != nil {
					cancel() // the others would wait for this one
				}
			}()
			g, err := collective.New(ctx, collective.Config{Endpoint: eps[r], Members: members, Epoch: 1, ChunkBytes: o.chunk, Timeout: stepTimeout})
			if err != nil {
				errs[r] = err
				return
			}
			// Each peer its own copy of the data set, as separate processes have.
			res[r], errs[r] = runPeer(ctx, g, set, o.spec(c, r, members))
		})
	}
	wg.Wait()
	return res, cluster.SelfCPU() - cpu0, errors.Join(errs...)
}

// procRunner runs configurations as peer processes over o.transport (tcp or
// quic), on one cluster (loopback or shaped namespaces) reused by every
// configuration.
type procRunner struct {
	o   *options
	cl  *cluster.Cluster
	exe string
}

func newProcRunner(ctx context.Context, o *options) (*procRunner, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cl, err := cluster.New(ctx, o.links, max(o.n, 2))
	if errors.Is(err, netns.ErrNotRoot) {
		return nil, fmt.Errorf("--links %s: %w; --transport mem runs rate-limited in-memory links without root", o.links, err)
	}
	if err != nil {
		return nil, err
	}
	return &procRunner{o: o, cl: cl, exe: exe}, nil
}

func (q *procRunner) Close() error { return q.cl.Close() }

func (q *procRunner) run(ctx context.Context, c config) ([]peerResult, float64, error) {
	o := q.o
	members := memberIDs(o.n)
	addrs := map[string]string{}
	for i, m := range members {
		a, err := q.cl.Addr(i, 0)
		if err != nil {
			return nil, 0, err
		}
		addrs[m] = a
	}
	sec, err := cluster.NewSecret()
	if err != nil {
		return nil, 0, err
	}
	names := make([]string, o.n)
	cmds := make([]*exec.Cmd, o.n)
	res := make([]peerResult, o.n)
	out := make([]any, o.n)
	timeout := cluster.ReadyTimeout + time.Duration(o.warmup+o.steps+2)*stepTimeout
	for r := range o.n {
		b, err := json.Marshal(o.spec(c, r, members))
		if err != nil {
			return nil, 0, err
		}
		names[r] = fmt.Sprintf("train %s bucket %s rank %d", c.model, bucketName(c.bucketBytes), r)
		if cmds[r], err = q.cl.WorkerCmd(ctx, r, q.exe, cluster.Spec{Job: JobName, ID: members[r], Addrs: addrs,
			Transport: o.transport, Secret: sec, Timeout: timeout, Args: b}); err != nil {
			return nil, 0, err
		}
		out[r] = &res[r]
	}
	if err := cluster.RunProcs(ctx, names, cmds, out); err != nil {
		return nil, 0, fmt.Errorf("train %s bucket %s over %s (%s): %w", c.model, bucketName(c.bucketBytes), o.transport, o.links, err)
	}
	var cpu float64
	for _, r := range res {
		cpu += r.CPUS
	}
	return res, cpu, nil
}

// Job is one trainer peer in its own process: it joins the ring over the
// process's endpoint and steps (runPeer), reporting its step times and
// its CPU time over the steps.
func Job(ctx context.Context, ep transport.Endpoint, raw json.RawMessage) (any, error) {
	var spec peerSpec
	if err := json.Unmarshal(raw, &spec); err != nil {
		return nil, fmt.Errorf("trainstep job: %w", err)
	}
	if spec.Rank < 0 || spec.Rank >= len(spec.Members) || spec.Steps < 1 {
		return nil, fmt.Errorf("trainstep job: rank %d of %d, %d steps", spec.Rank, len(spec.Members), spec.Steps)
	}
	set, err := data.MNISTSplit("", "t10k")
	if err != nil {
		return nil, err
	}
	g, err := collective.New(ctx, collective.Config{Endpoint: ep, Members: spec.Members, Epoch: 1, ChunkBytes: spec.Chunk, Timeout: stepTimeout})
	if err != nil {
		return nil, err
	}
	cpu0 := cluster.SelfCPU()
	res, err := runPeer(ctx, g, set, spec)
	res.CPUS = cluster.SelfCPU() - cpu0
	return res, err
}
