package train

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sync"
	"time"

	"github.com/ringtrain/ringtrain/collective"
	"github.com/ringtrain/ringtrain/data"
	"github.com/ringtrain/ringtrain/membership"
	"github.com/ringtrain/ringtrain/node"
)

// Node is what the elastic loop needs from the node it runs on: agreement
// on the epoch of the next step, with its collective group, at every step
// boundary. *node.Node satisfies it.
type Node interface {
	ID() string
	Boundary(ctx context.Context, s node.Step) (node.Boundary, error)
	// RequestLeave makes a node still waiting for admission stop waiting.
	RequestLeave()
}

// JobConfig configures an elastic training job on one node.
type JobConfig struct {
	Trainer *Trainer
	// Node gives each step's epoch and group; it is configured with the
	// Trainer's MarshalState and UnmarshalState as its Snapshot and
	// Restore.
	Node Node
	// Steps stops the job at this global step; if 0, Epochs data epochs.
	Steps  uint64
	Epochs int
	// Test is evaluated (sharded) every EvalEvery steps, or at the end of
	// each data epoch when EvalEvery is 0, and at the end.
	Test      *data.Set
	EvalEvery int
	// DigestEvery compares parameter digests across members every this
	// many steps (0: only at the end).
	DigestEvery int
	// CheckpointEvery calls Checkpoint every this many steps (and at the end).
	CheckpointEvery int
	Checkpoint      func(step uint64, epoch membership.Epoch) error
	// Leave, when closed, makes this node leave gracefully at the next step
	// boundary.
	Leave <-chan struct{}
	// OnStep, OnEval and OnEpoch see progress; they run on the job's goroutine.
	OnStep func(JobStep)
	// OnStepFailed sees each step whose collective failed (it is retried
	// in the next epoch).
	OnStepFailed func(error)
	OnEval       func(JobEval)
	OnEpoch      func(membership.Epoch)
	Log          *slog.Logger
}

// JobStep reports one applied step.
type JobStep struct {
	StepStats
	Epoch       membership.Epoch
	Peers       int
	StepTime    time.Duration
	CommTime    time.Duration // time waiting for the gradient reduction after backward
	CommBytes   int           // size of the all-reduced buffer
	GlobalBatch int
	TotalSteps  uint64 // estimate of the step the job ends at, with the current peers
}

// JobEval reports one evaluation.
type JobEval struct {
	Step uint64
	Eval
}

// JobResult is the outcome of a job on this node.
type JobResult struct {
	Steps       uint64
	Epoch       membership.Epoch
	Final       Eval   // last evaluation (zero if none)
	Digest      uint64 // parameter digest at the end
	Left        bool   // this node left before the end
	FailedSteps int    // steps whose collective failed and were retried
	Samples     int64  // global samples trained through while this node took part
}

// RunJob trains across membership epochs: before every step the members
// agree on the epoch (admitting newcomers, dropping lost or leaving peers,
// syncing the state of those behind), then run the step over that epoch's
// ring. A step whose collective fails is not applied where it failed; the
// next boundary forms a new epoch and brings every member to the same state.
func RunJob(ctx context.Context, jc JobConfig) (JobResult, error) {
	t := jc.Trainer
	log := jc.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var (
		res  JobResult
		g    *collective.Group
		cur  membership.Epoch
		last Eval
	)
	// A node still waiting to be admitted sees a leave request at once;
	// members see it at their next step boundary.
	if jc.Leave != nil {
		var wg sync.WaitGroup
		stop := make(chan struct{})
		defer wg.Wait()
		defer close(stop)
		wg.Go(func() {
			select {
			case <-jc.Leave:
				jc.Node.RequestLeave()
			case <-stop:
			}
		})
	}
	out, err := jc.Node.Boundary(ctx, node.Step{Done: t.step})
	for {
		if err != nil {
			return res, fmt.Errorf("train: node %s at step %d: %w", jc.Node.ID(), t.step, err)
		}
		if out.Left {
			res.Left = true
			break
		}
		if out.Changed || g == nil {
			cur, g = membership.Epoch{Number: out.Epoch, Members: out.Members}, out.Group
			if jc.OnEpoch != nil {
				jc.OnEpoch(cur)
			}
		}
		if jc.finished() {
			// Every member reaches the end at the same step: a last
			// digest check and evaluation on the final ring. A peer lost
			// here is handled like a failed step, then the end is retried.
			sctx, cancel := jc.abortOnDeath(ctx, cur.Members)
			ferr := withCause(jc.final(sctx, g, &last), ctx, sctx)
			cancel()
			var div *DivergenceError
			if ferr == nil || errors.As(ferr, &div) {
				if ferr != nil {
					return res, ferr
				}
				break
			}
			log.Warn("final check failed; forming the next epoch", "step", t.step, "epoch", cur.Number, "err", ferr)
			out, err = jc.Node.Boundary(ctx, node.Step{Done: t.step, Err: ferr})
			continue
		}
		sctx, cancel := jc.abortOnDeath(ctx, cur.Members)
		serr := withCause(jc.step(sctx, g, cur, &res, &last), ctx, sctx)
		cancel()
		var div *DivergenceError
		if errors.As(serr, &div) {
			return res, serr
		}
		if serr != nil {
			res.FailedSteps++
			if jc.OnStepFailed != nil {
				jc.OnStepFailed(serr)
			}
			log.Warn("step failed; forming the next epoch", "step", t.step, "epoch", cur.Number, "err", serr)
		}
		// A leave is announced in the boundary right after a step, which
		// every member attends, so the others form the next epoch without
		// this node and no collective waits for it.
		out, err = jc.Node.Boundary(ctx, node.Step{Done: t.step, Err: serr, Leave: leaving(jc.Leave)})
	}
	res.Steps, res.Epoch, res.Digest = t.step, cur, t.Digest()
	if res.Left || g == nil {
		res.Final = last
		if res.Left && jc.Checkpoint != nil {
			// Leaving keeps this node's state, e.g. to --resume later.
			if err := jc.Checkpoint(t.step, cur); err != nil {
				return res, err
			}
		}
		return res, nil
	}
	res.Final = last
	if jc.Checkpoint != nil {
		if err := jc.Checkpoint(t.step, cur); err != nil {
			return res, err
		}
	}
	return res, nil
}

// deathAborter is implemented by a Node whose failure detector can
// abort a step (*node.Node): the context it returns is cancelled
// when one of peers is declared dead.
type deathAborter interface {
	AbortOnDeath(ctx context.Context, peers []string) (context.Context, context.CancelFunc)
}

// abortOnDeath runs a step under the membership's failure detector when it
// has one: a collective blocked, directly or through other members, on a
// member that died fails at once instead of at the transport's timeout.
func (jc *JobConfig) abortOnDeath(ctx context.Context, members []string) (context.Context, context.CancelFunc) {
	if d, ok := jc.Node.(deathAborter); ok {
		return d.AbortOnDeath(ctx, members)
	}
	return context.WithCancel(ctx)
}

// withCause adds to err why the step's context sctx was cancelled, when it
// was and the job's ctx was not (the failure detector named a dead peer).
func withCause(err error, ctx, sctx context.Context) error {
	if err == nil || ctx.Err() != nil || sctx.Err() == nil {
		return err
	}
	return fmt.Errorf("%w (step aborted: %w)", err, context.Cause(sctx))
}

// final runs the end-of-job digest check and evaluation.
func (jc *JobConfig) final(ctx context.Context, g *collective.Group, last *Eval) error {
	t := jc.Trainer
	if err := t.CheckDigest(ctx, g); err != nil {
		return err
	}
	if jc.Test == nil {
		return nil
	}
	e, err := t.Evaluate(ctx, g, jc.Test)
	if err != nil {
		return fmt.Errorf("train: final evaluation: %w", err)
	}
	*last = e
	if jc.OnEval != nil {
		jc.OnEval(JobEval{Step: t.step, Eval: e})
	}
	return nil
}

func leaving(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// finished: every member holds the same position, so all stop together.
func (jc *JobConfig) finished() bool {
	t := jc.Trainer
	if jc.Steps > 0 {
		return t.step >= jc.Steps
	}
	return t.epoch >= uint64(jc.Epochs)
}

// totalSteps estimates the final step with the current number of peers.
func (jc *JobConfig) totalSteps(peers int) uint64 {
	t := jc.Trainer
	if jc.Steps > 0 {
		return jc.Steps
	}
	n := t.cfg.Train.Len()
	gb := max(peers*t.cfg.BatchPerPeer, 1)
	left := (jc.Epochs-int(t.epoch))*n - t.cursor
	if left <= 0 {
		return t.step
	}
	// A data epoch's tail step is short, so each epoch has ceil(n/gb) steps.
	perEpoch := (n + gb - 1) / gb
	rest := (n - t.cursor + gb - 1) / gb
	return t.step + uint64(rest) + uint64(max(jc.Epochs-int(t.epoch)-1, 0)*perEpoch)
}

// step runs one step and the periodic work after it (digest check,
// evaluation, checkpoint). A collective failure in any of them is returned
// for the boundary to handle.
func (jc *JobConfig) step(ctx context.Context, g *collective.Group, ep membership.Epoch, res *JobResult, last *Eval) error {
	t := jc.Trainer
	start := time.Now()
	st, err := t.Step(ctx, g)
	if err != nil {
		return err
	}
	took := time.Since(start)
	res.Samples += int64(st.Share.Global)
	if jc.OnStep != nil {
		jc.OnStep(JobStep{StepStats: st, Epoch: ep, Peers: g.Size(), StepTime: took, CommTime: st.CommWait, CommBytes: st.CommBytes,
			GlobalBatch: g.Size() * t.cfg.BatchPerPeer, TotalSteps: jc.totalSteps(g.Size())})
	}
	if k := jc.DigestEvery; k > 0 && t.step%uint64(k) == 0 {
		if err := t.CheckDigest(ctx, g); err != nil {
			return err
		}
	}
	evalNow := (jc.EvalEvery > 0 && t.step%uint64(jc.EvalEvery) == 0) || (jc.EvalEvery == 0 && st.EpochDone)
	if jc.Test != nil && evalNow && !jc.finished() {
		e, err := t.Evaluate(ctx, g, jc.Test)
		if err != nil {
			return err
		}
		*last = e
		if jc.OnEval != nil {
			jc.OnEval(JobEval{Step: t.step, Eval: e})
		}
	}
	if k := jc.CheckpointEvery; jc.Checkpoint != nil && k > 0 && t.step%uint64(k) == 0 && !jc.finished() {
		if err := jc.Checkpoint(t.step, ep); err != nil {
			// A full disk is not a reason to stop training everywhere.
			jc.logf("checkpoint failed", "step", t.step, "err", err)
		}
	}
	return nil
}

func (jc *JobConfig) logf(msg string, args ...any) {
	if jc.Log != nil {
		jc.Log.Warn(msg, args...)
	}
}

// SamplesPerSecond is a helper for progress displays: global samples per
// second of a step.
func (s JobStep) SamplesPerSecond() float64 {
	if s.StepTime <= 0 {
		return 0
	}
	return float64(s.Share.Global) / s.StepTime.Seconds()
}

// ETA estimates the time left from the last step's duration.
func (s JobStep) ETA() time.Duration {
	if s.TotalSteps <= s.Step+1 {
		return 0
	}
	left := float64(s.TotalSteps - s.Step - 1)
	return time.Duration(math.Min(left*float64(s.StepTime), float64(100*24*time.Hour)))
}
