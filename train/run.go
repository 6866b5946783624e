package train

import (
	"context"
	"fmt"

	"github.com/ringtrain/ringtrain/data"
)

// RunConfig says how long Run trains and what it reports.
type RunConfig struct {
	// Epochs: train until this many data epochs are complete.
	Epochs int
	// Test, when set, is evaluated (sharded over the peers) after every
	// data epoch, and every EvalEvery steps when that is positive.
	Test      *data.Set
	EvalEvery int
	// OnStep and OnEval, when set, see every step's and evaluation's
	// result (OnEval with the step after which it ran); they run on the
	// training goroutine.
	OnStep func(StepStats)
	OnEval func(after StepStats, e Eval)
}

// Run trains over a fixed communicator until RunConfig.Epochs data epochs
// are done, checking parameter digests every Config.DigestEvery steps and
// evaluating after each data epoch. Elastic jobs instead call Step (and
// CheckDigest, Evaluate) themselves and swap communicators between steps.
func (t *Trainer) Run(ctx context.Context, comm Comm, rc RunConfig) error {
	for t.epoch < uint64(rc.Epochs) {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("train: stopped at step %d: %w", t.step, err)
		}
		st, err := t.Step(ctx, comm)
		if err != nil {
			return err
		}
		if rc.OnStep != nil {
			rc.OnStep(st)
		}
		if k := t.cfg.DigestEvery; k > 0 && t.step%uint64(k) == 0 {
			if err := t.CheckDigest(ctx, comm); err != nil {
				return err
			}
		}
		periodic := rc.EvalEvery > 0 && t.step%uint64(rc.EvalEvery) == 0
		if rc.Test != nil && (st.EpochDone || periodic) {
			e, err := t.Evaluate(ctx, comm, rc.Test)
			if err != nil {
				return err
			}
			if rc.OnEval != nil {
				rc.OnEval(st, e)
			}
		}
	}
	return nil
}
