package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"time"
)

// startProfile starts a CPU profile into path (nothing when path is empty);
// the returned function stops it.
func startProfile(path string) (stop func(), err error) {
	if path == "" {
		return func() {}, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() { pprof.StopCPUProfile(); f.Close() }, nil
}

// workerSpec is everything one peer process needs: its role, the schedule,
// and where every node of the job listens.
type workerSpec struct {
	Role    roleSpec          `json:"role"`
	Measure measureSpec       `json:"measure"`
	Addrs   map[string]string `json:"addrs"`  // node ID -> host:port
	Secret  string            `json:"secret"` // the run's cluster secret (hex)
	// Profile, if set, is a file for this worker's CPU profile.
	Profile string `json:"profile,omitempty"`
}

// runWorker is the hidden "worker" subcommand: one ringtrain rank or
// parameter-server node in its own process (and, with shaped links, its own
// network namespace), talking QUIC to the others.
func runWorker(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("worker", flag.ContinueOnError)
	specJSON := fs.String("spec", "", "worker spec (JSON)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var spec workerSpec
	if err := json.Unmarshal([]byte(*specJSON), &spec); err != nil {
		return fmt.Errorf("worker: spec: %w", err)
	}
	id := spec.Role.id()
	// A bound on the whole run, so that a lost driver never leaves a
	// worker behind: every size's rounds plus setup.
	total := time.Minute + time.Duration(len(spec.Measure.Sizes)*(spec.Measure.Warmup+spec.Measure.Iters))*spec.Measure.OpTimeout
	ctx, cancel := context.WithTimeout(ctx, total)
	defer cancel()
	ep, err := newQUICEndpoint(ctx, id, spec.Addrs, spec.Secret)
	if err != nil {
		return fmt.Errorf("worker %s: %w", id, err)
	}
	defer ep.Close()
	ctx, drv, err := workerHandshake(ctx)
	if err != nil {
		return fmt.Errorf("worker %s: %w", id, err)
	}
	p, err := newParticipant(ctx, ep, spec.Role, spec.Measure.OpTimeout)
	if err != nil {
		return fmt.Errorf("worker %s: %w", id, err)
	}
	stop, err := startProfile(spec.Profile)
	if err != nil {
		return fmt.Errorf("worker %s: %w", id, err)
	}
	res, err := measure(ctx, p, spec.Measure, selfCPU)
	stop()
	if err != nil {
		return fmt.Errorf("worker %s: %w", id, err)
	}
	return drv.finish(ctx, res)
}

// runProcJob runs one job with one process per participant, placed on the
// cluster's slots (participant i on slot slots[i]). It returns the workers'
// results and the CPU time per size summed over all participants.
func runProcJob(ctx context.Context, cl *cluster, exe string, roles []roleSpec, slots []int, spec measureSpec, profileDir string) ([]measureResult, []float64, error) {
	addrs := map[string]string{}
	for i, r := range roles {
		a, err := cl.addr(slots[i], 0)
		if err != nil {
			return nil, nil, err
		}
		addrs[r.id()] = a
	}
	sec, err := newSecret()
	if err != nil {
		return nil, nil, err
	}
	var names []string
	var cmds []*exec.Cmd
	results := make([]measureResult, len(roles))
	var out []any
	for i, r := range roles {
		ws := workerSpec{Role: r, Measure: spec, Addrs: addrs, Secret: sec}
		if profileDir != "" {
			ws.Profile = filepath.Join(profileDir, fmt.Sprintf("cpu-%s-n%d-%s.pprof", r.System, len(r.Workers), r.id()))
		}
		b, err := json.Marshal(ws)
		if err != nil {
			return nil, nil, err
		}
		names = append(names, fmt.Sprintf("%s %s", r.System, r.id()))
		cmds = append(cmds, cl.command(ctx, slots[i], exe, "worker", "--spec", string(b)))
		out = append(out, &results[i])
	}
	if err := runProcs(ctx, names, cmds, out); err != nil {
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
