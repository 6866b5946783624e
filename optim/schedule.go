package optim

import (
	"encoding/binary"
	"fmt"
	"math"
)

// Schedule maps a global step number to a factor on the base learning rate.
// Schedules are pure functions of the step, so every peer computes the same
// rate without coordination.
type Schedule interface {
	Factor(step int64) float64
}

// Constant keeps the factor at 1.
type Constant struct{}

func (Constant) Factor(int64) float64 { return 1 }

// StepDecay multiplies the factor by Gamma every Every steps.
type StepDecay struct {
	Every int64
	Gamma float64
}

func (s StepDecay) Factor(step int64) float64 {
	if s.Every <= 0 || step < 0 {
		return 1
	}
	return math.Pow(s.Gamma, float64(step/s.Every))
}

// Cosine anneals the factor from 1 to Floor over Total steps (Loshchilov &
// Hutter 2017, without restarts) and stays at Floor afterwards.
type Cosine struct {
	Total int64
	Floor float64
}

func (c Cosine) Factor(step int64) float64 {
	if c.Total <= 0 || step >= c.Total {
		return c.Floor
	}
	if step < 0 {
		step = 0
	}
	return c.Floor + (1-c.Floor)*0.5*(1+math.Cos(math.Pi*float64(step)/float64(c.Total)))
}

// Warmup ramps the factor linearly from Start (at step 0) to the wrapped
// schedule's value over Steps steps (Goyal et al. 2017, gradual warmup),
// then follows Then. A nil Then means Constant.
type Warmup struct {
	Steps int64
	Start float64
	Then  Schedule
}

func (w Warmup) Factor(step int64) float64 {
	f := 1.0
	if w.Then != nil {
		f = w.Then.Factor(step)
	}
	if step >= w.Steps || w.Steps <= 0 {
		return f
	}
	if step < 0 {
		step = 0
	}
	a := float64(step) / float64(w.Steps)
	return f * (w.Start + (1-w.Start)*a)
}

// Scaler applies the linear scaling rule: the learning rate is proportional
// to the global batch, LR = BaseLR · batch/BaseBatch · schedule(step)
// (Goyal et al. 2017). When the global batch grows because peers joined, the
// rate ramps linearly from the old batch's rate to the new one over Warmup
// steps, so a sudden jump does not destabilise training; when it shrinks the
// rate drops at once.
//
// The exported fields are configuration; the rest is state that every peer
// must share, so it is serialized into the training state.
type Scaler struct {
	BaseLR    float64
	BaseBatch int
	Warmup    int64
	// Fixed turns scaling off: the rate is BaseLR (times the schedule)
	// whatever the global batch.
	Fixed bool

	batch     uint64 // nominal global batch in effect (0 before the first step)
	fromBatch uint64 // global batch before the last change
	changedAt int64  // step of the last change
}

// LR returns the learning rate for step with the given nominal global
// batch (peers × per-peer batch; not the size of a short epoch tail).
func (s *Scaler) LR(step int64, globalBatch int, sched Schedule) float64 {
	gb := uint64(max(globalBatch, 1))
	if s.batch == 0 {
		s.batch, s.fromBatch, s.changedAt = gb, gb, step
	} else if gb != s.batch {
		s.fromBatch, s.batch, s.changedAt = s.batch, gb, step
	}
	f := 1.0
	if sched != nil {
		f = sched.Factor(step)
	}
	if s.Fixed {
		return s.BaseLR * f
	}
	base := float64(max(s.BaseBatch, 1))
	target := s.BaseLR * float64(s.batch) / base * f
	if s.fromBatch >= s.batch || s.Warmup <= 0 || step-s.changedAt >= s.Warmup {
		return target
	}
	r0 := float64(s.fromBatch) / float64(s.batch)
	a := float64(step-s.changedAt) / float64(s.Warmup)
	return target * (r0 + (1-r0)*a)
}

// MarshalBinary encodes the scaler's state (not its configuration).
func (s *Scaler) MarshalBinary() ([]byte, error) {
	b := make([]byte, 0, 24)
	b = binary.LittleEndian.AppendUint64(b, s.batch)
	b = binary.LittleEndian.AppendUint64(b, s.fromBatch)
	b = binary.LittleEndian.AppendUint64(b, uint64(s.changedAt))
	return b, nil
}

// UnmarshalBinary restores state written by MarshalBinary.
func (s *Scaler) UnmarshalBinary(b []byte) error {
	if len(b) != 24 {
		return fmt.Errorf("%w: scaler state of %d bytes, want 24", ErrState, len(b))
	}
	s.batch = binary.LittleEndian.Uint64(b)
	s.fromBatch = binary.LittleEndian.Uint64(b[8:])
	s.changedAt = int64(binary.LittleEndian.Uint64(b[16:]))
	return nil
}
