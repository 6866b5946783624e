package scaling

// The trainer-driven emulated GPU (--emu-step trainer): each peer steps a
// real train.Trainer, whose model (bench/emumodel) waits out the profile's
// compute and reports each gradient tensor ready at its profiled time, so
// the step's bucketing (collective.Bucketer planned by train.New over the
// model's GradOrder, launched from model.SetGradReady), its collective
// calls and its optimizer are the trainer's own: what the simulator's
// `bucketed` and `none` modes are validated against.

import (
	"context"
	"fmt"

	"github.com/ringtrain/ringtrain/bench/emumodel"
	"github.com/ringtrain/ringtrain/collective"
	"github.com/ringtrain/ringtrain/data"
	"github.com/ringtrain/ringtrain/optim"
	"github.com/ringtrain/ringtrain/train"
)

// Step drivers of an emulated GPU (--emu-step).
const (
	// stepTrainer steps train.Trainer over an emumodel model.
	stepTrainer = "trainer"
	// stepBench is the bench's own step (emuPeer): a Bucketer round driven
	// by the profile's timeline, or one all-reduce after backward.
	stepBench = "bench"
)

// emuStepper is one emulated GPU across its steps.
type emuStepper interface {
	// step runs one timed training step.
	step(ctx context.Context) error
	// refill sets the next step's input and check verifies its result on
	// n peers; both untimed.
	refill(rank int)
	check(n int) error
	// digest identifies the peer's parameters after its steps (0: the
	// stepper has none).
	digest() uint64
}

// newStepper returns p's stepper over g (g may be nil to inspect a plan).
func newStepper(g *collective.Group, p emuPlan) (emuStepper, error) {
	if p.Trainer {
		return newTrainerPeer(g, p)
	}
	return newEmuPeer(g, p)
}

func (e *emuPeer) refill(rank int)   { fillInput(e.arena, rank) }
func (e *emuPeer) check(n int) error { return checkAvg(e.arena, n) }
func (e *emuPeer) digest() uint64    { return 0 }

// trainerPeer is one emulated GPU stepping the real trainer.
type trainerPeer struct {
	g  *collective.Group
	tr *train.Trainer
}

// emuDataSteps is how many global batches the emulated data set holds (it
// wraps around after that; every step is a full one).
const emuDataSteps = 16

// newTrainerPeer builds the trainer of p: the emumodel model of p's
// segments and compute times, SGD with momentum, p.Batch samples per peer
// of a synthetic data set that holds a whole number of global batches, the
// gradients bucketed with p.BucketBytes (the scaled bucket) when p is
// bucketed and reduced over p.Wire.
func newTrainerPeer(g *collective.Group, p emuPlan) (*trainerPeer, error) {
	wire, err := collective.ParseDType(p.Wire)
	if err != nil {
		return nil, err
	}
	tensors := make([]emumodel.Tensor, len(p.Segments))
	for i, s := range p.Segments {
		tensors[i] = emumodel.Tensor{Len: s.Len, Ready: s.Ready}
	}
	m, err := emumodel.New(tensors, emumodel.Timing{Optimizer: p.Optimizer, Forward: p.Forward, Backward: p.Backward}, 1)
	if err != nil {
		return nil, err
	}
	size := 1
	if g != nil {
		size = g.Size()
	}
	batch := max(p.Batch, 1)
	cfg := train.Config{Model: m, Optimizer: &optim.SGD{Momentum: 0.9},
		LR:    optim.Scaler{BaseLR: 0.01, BaseBatch: batch, Fixed: true},
		Train: emuData(emuDataSteps * size * batch), BatchPerPeer: batch, Seed: 1, Wire: wire}
	if p.Bucketed {
		cfg.BucketBytes = p.BucketBytes
	}
	tr, err := train.New(cfg)
	if err != nil {
		return nil, err
	}
	return &trainerPeer{g: g, tr: tr}, nil
}

// emuData is a deterministic data set of n samples of emumodel.Classes
// values.
func emuData(n int) *data.Set {
	s := &data.Set{Images: make([]float32, n*emumodel.Classes), Labels: make([]uint8, n), Rows: 1, Cols: emumodel.Classes}
	for i := range s.Images {
		s.Images[i] = float32(i%7)/7 - 0.5
	}
	for i := range s.Labels {
		s.Labels[i] = uint8(i % emumodel.Classes)
	}
	return s
}

func (t *trainerPeer) step(ctx context.Context) error {
	if _, err := t.tr.Step(ctx, t.g); err != nil {
		return fmt.Errorf("emulated trainer step: %w", err)
	}
	return nil
}

func (*trainerPeer) refill(int)       {}
func (*trainerPeer) check(int) error  { return nil }
func (t *trainerPeer) digest() uint64 { return t.tr.Digest() }

// sameDigests checks that every peer ended with the parameters of rank 0.
func sameDigests(what string, digests []uint64) error {
	for r, d := range digests {
		if d != digests[0] {
			return fmt.Errorf("%s: rank %d's parameters differ from rank 0's (digest %016x vs %016x)", what, r, d, digests[0])
		}
	}
	return nil
}
