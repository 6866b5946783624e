package allreduce

import (
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/ringtrain/ringtrain/bench/cluster"
	"github.com/ringtrain/ringtrain/transport"
)

// JobName is the worker job of bench allreduce (cluster.RunWorker).
const JobName = "allreduce"

// jobArgs is what one peer process of a measured job needs besides the
// cluster's part of its spec: its role and the schedule.
type jobArgs struct {
	Role    roleSpec    `json:"role"`
	Measure measureSpec `json:"measure"`
}

// Job is one ringtrain rank or parameter-server node in its own process
// (and, with shaped links, its own network namespace), talking QUIC to the
// others: it follows the measured schedule and returns its measureResult.
func Job(ctx context.Context, ep transport.Endpoint, raw json.RawMessage) (any, error) {
	var a jobArgs
	if err := json.Unmarshal(raw, &a); err != nil {
		return nil, fmt.Errorf("allreduce job: %w", err)
	}
	p, err := newParticipant(ctx, ep, a.Role, a.Measure.OpTimeout)
	if err != nil {
		return nil, err
	}
	return measure(ctx, p, a.Measure, cluster.SelfCPU)
}

// runProcJob runs one job with one process per participant, placed on the
// cluster's slots (participant i on slot slots[i]). It returns the workers'
// results and the CPU time per size summed over all participants.
func runProcJob(ctx context.Context, cl *cluster.Cluster, exe, transportName string, roles []roleSpec, slots []int, spec measureSpec, profileDir string) ([]measureResult, []float64, error) {
	addrs := map[string]string{}
	for i, r := range roles {
		a, err := cl.Addr(slots[i], 0)
		if err != nil {
			return nil, nil, err
		}
		addrs[r.id()] = a
	}
	sec, err := cluster.NewSecret()
	if err != nil {
		return nil, nil, err
	}
	// A bound on the whole run: every size's rounds plus setup.
	total := time.Minute + time.Duration(len(spec.Sizes)*(spec.Warmup+spec.Iters))*spec.OpTimeout
	var names []string
	var cmds []*exec.Cmd
	results := make([]measureResult, len(roles))
	var out []any
	for i, r := range roles {
		args, err := json.Marshal(jobArgs{Role: r, Measure: spec})
		if err != nil {
			return nil, nil, err
		}
		ws := cluster.Spec{Job: JobName, ID: r.id(), Addrs: addrs, Secret: sec, Transport: transportName, Lanes: r.Lanes, Timeout: total, Args: args}
		if profileDir != "" {
			ws.Profile = filepath.Join(profileDir, fmt.Sprintf("cpu-%s-n%d-%s.pprof", r.name(), len(r.Workers), r.id()))
		}
		cmd, err := cl.WorkerCmd(ctx, slots[i], exe, ws)
		if err != nil {
			return nil, nil, err
		}
		names = append(names, fmt.Sprintf("%s %s", r.name(), r.id()))
		cmds = append(cmds, cmd)
		out = append(out, &results[i])
	}
	if err := cluster.RunProcs(ctx, names, cmds, out); err != nil {
		return nil, nil, err
	}
	cpu := make([]float64, len(spec.Sizes))
	var workers []measureResult
	for i, r := range roles {
		for s := range cpu {
			if s < len(results[i].CPU) {
				cpu[s] += results[i].CPU[s]
			}
		}
		if !r.Server {
			workers = append(workers, results[i])
		}
	}
	return workers, cpu, nil
}
