package cluster

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime/pprof"
	"time"

	"github.com/ringtrain/ringtrain/transport"
)

// WorkerCommand is the hidden subcommand every peer process runs
// ("bench worker --spec JSON"); RunWorker implements it.
const WorkerCommand = "worker"

// Spec is everything one peer process needs: what it runs (Job and its
// Args), who it is, where every node of the run listens, and how long it
// may live.
type Spec struct {
	Job    string            `json:"job"`    // a key of the jobs RunWorker is given
	ID     string            `json:"id"`     // this peer's node ID, a key of Addrs
	Addrs  map[string]string `json:"addrs"`  // node ID -> host:port
	Secret string            `json:"secret"` // the run's cluster secret (hex, NewSecret)
	// Transport names the endpoint (NewEndpoint): "quic" (or empty) or "tcp".
	Transport string `json:"transport,omitempty"`
	// Lanes is transport/tcp's Config.Lanes (0: its default, 1).
	Lanes int `json:"lanes,omitempty"`
	// Timeout bounds the whole process, so that a lost driver never leaves
	// a worker behind.
	Timeout time.Duration `json:"timeout"`
	// Profile, if set, is a file for this worker's CPU profile of its job.
	Profile string          `json:"profile,omitempty"`
	Args    json.RawMessage `json:"args"` // the job's own spec
}

// Job is the part of a peer process that differs between benchmarks: it
// runs once every peer is ready, over the peer's endpoint (epoch 1), and
// returns the result the driver receives (JSON-encoded).
type Job func(ctx context.Context, ep transport.Endpoint, args json.RawMessage) (any, error)

// WorkerCmd is the peer process of spec on a slot: exe (the bench binary)
// re-executed as the worker subcommand.
func (c *Cluster) WorkerCmd(ctx context.Context, slot int, exe string, spec Spec) (*exec.Cmd, error) {
	b, err := json.Marshal(spec)
	if err != nil {
		return nil, err
	}
	return c.Command(ctx, slot, exe, WorkerCommand, "--spec", string(b)), nil
}

// WorkerMain runs the worker subcommand with jobs when args (a process's
// os.Args) name it, writing its error to stderr; it returns whether it ran
// and the exit code the process should end with. A test binary whose driver
// under test starts it as a peer process ("<its executable> worker …")
// calls it first in TestMain.
func WorkerMain(args []string, jobs map[string]Job, stderr io.Writer) (ran bool, code int) {
	if len(args) < 2 || args[1] != WorkerCommand {
		return false, 0
	}
	if err := RunWorker(context.Background(), args[2:], jobs); err != nil {
		fmt.Fprintln(stderr, err)
		return true, 1
	}
	return true, 0
}

// RunWorker is the worker subcommand: it listens on the spec's address,
// announces READY, and on GO runs the spec's job from jobs and reports its
// result. The jobs are the benchmarks' (main wires them in).
func RunWorker(ctx context.Context, args []string, jobs map[string]Job) error {
	fs := flag.NewFlagSet(WorkerCommand, flag.ContinueOnError)
	specJSON := fs.String("spec", "", "worker spec (JSON)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var spec Spec
	if err := json.Unmarshal([]byte(*specJSON), &spec); err != nil {
		return fmt.Errorf("worker: spec: %w", err)
	}
	job := jobs[spec.Job]
	if job == nil {
		return fmt.Errorf("worker %s: unknown job %q", spec.ID, spec.Job)
	}
	if _, ok := spec.Addrs[spec.ID]; !ok || !(spec.Timeout > 0) {
		return fmt.Errorf("worker %s: no address of its own or no timeout (%v)", spec.ID, spec.Timeout)
	}
	ctx, cancel := context.WithTimeout(ctx, spec.Timeout)
	defer cancel()
	ep, err := NewEndpoint(ctx, spec.Transport, spec.ID, spec.Addrs, spec.Secret, spec.Lanes)
	if err != nil {
		return fmt.Errorf("worker %s: %w", spec.ID, err)
	}
	defer ep.Close()
	ctx, drv, err := Handshake(ctx)
	if err != nil {
		return fmt.Errorf("worker %s: %w", spec.ID, err)
	}
	stop, err := StartProfile(spec.Profile)
	if err != nil {
		return fmt.Errorf("worker %s: %w", spec.ID, err)
	}
	res, err := job(ctx, ep, spec.Args)
	stop()
	if err != nil {
		return fmt.Errorf("worker %s: %w", spec.ID, err)
	}
	return drv.Finish(ctx, res)
}

// StartProfile starts a CPU profile of this process into path (nothing when
// path is empty); the returned function stops it.
func StartProfile(path string) (stop func(), err error) {
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
