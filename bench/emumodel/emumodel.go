// Package emumodel builds a model.Model that stands for a GPU's training
// step in the scaled emulation: its layers compute (almost) nothing and
// instead wait until the times a measured profile gives, so that the real
// trainer (train.Trainer.Step: its bucketing in backward order through
// model.SetGradReady, its collective calls, its optimizer) runs on this
// machine with a GPU's timing.
//
// The model is a model.Sequential of pass-through layers on samples of
// Classes floats: layer 0 holds no parameters and waits out the
// optimizer and forward time in Forward and the rest of backward in
// Backward; then one layer per gradient tensor, the tensor that backward
// finishes first last, so model.Backward reaches them in the profile's
// ready order and reports each one ready (SetGradReady) when its wait
// ends, exactly as a real model reports a layer whose gradients are done.
//
// Invariants:
//   - GradOrder lists the tensors in the order they were given (ready
//     order), with their lengths, so collective.NewBucketer plans the same
//     buckets the simulator plans over the same tensors.
//   - Waits run to deadlines measured from the start of the step (layer
//     0's training Forward), so timer overshoot does not accumulate.
//   - Gradients depend only on the batch (dL/dlogits), so peers stepping
//     the same samples compute the same gradients, and after every
//     all-reduce every peer holds the same parameters.
//
// A layer's waits take no context (model.Layer has none): each is bounded
// by the profile's step time.
package emumodel

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/ringtrain/ringtrain/model"
)

// Classes is the sample size and the number of logits: the layers pass
// their input through, and the loss needs at least two classes.
const Classes = 2

// Tensor is one gradient tensor, in the order backward makes them ready.
type Tensor struct {
	Len   int           // floats
	Ready time.Duration // from the start of backward
}

// Timing is the profile's compute of one training step.
type Timing struct {
	// Optimizer is waited out before forward (in the steady state of a
	// synchronous ring the step period is the same as after the
	// all-reduce, and a sub-millisecond wait of its own would overshoot).
	Optimizer time.Duration
	Forward   time.Duration
	// Backward ends the step's compute: layer 0's Backward waits until
	// then, after the last tensor is ready.
	Backward time.Duration
}

// clock is the step's timeline, shared by a model's layers (one goroutine:
// model.Model's Forward and Backward).
type clock struct {
	t        Timing
	backward time.Time // start of backward of the current step
}

// New returns the model of tensors (ready order) and t, parameters
// initialised from seed.
func New(tensors []Tensor, t Timing, seed uint64) (*model.Model, error) {
	if len(tensors) == 0 {
		return nil, errors.New("emumodel: no gradient tensors")
	}
	if t.Optimizer < 0 || t.Forward < 0 || t.Backward < 0 {
		return nil, fmt.Errorf("emumodel: negative compute time in %+v", t)
	}
	c := &clock{t: t}
	specs := []model.Spec{func(model.Shape) (model.Layer, error) { return &head{c: c}, nil }}
	for k := len(tensors) - 1; k >= 0; k-- {
		tn := tensors[k]
		if tn.Len <= 0 || tn.Ready < 0 || tn.Ready > t.Backward {
			return nil, fmt.Errorf("emumodel: tensor %d: %d floats ready at %v (backward %v)", k, tn.Len, tn.Ready, t.Backward)
		}
		specs = append(specs, func(model.Shape) (model.Layer, error) { return &tensor{c: c, k: k, t: tn}, nil })
	}
	m, err := model.NewSequential(model.Shape{Classes}, specs...)
	if err != nil {
		return nil, fmt.Errorf("emumodel: %w", err)
	}
	m.Init(seed)
	return m, nil
}

// waitUntil sleeps until deadline (returns at once if it has passed).
func waitUntil(deadline time.Time) {
	if d := time.Until(deadline); d > 0 {
		time.Sleep(d)
	}
}

// passThrough is the shape part of a layer that returns its input.
type passThrough struct{}

func (passThrough) InShape() model.Shape  { return model.Shape{Classes} }
func (passThrough) OutShape() model.Shape { return model.Shape{Classes} }

// head is layer 0: it starts the step's timeline.
type head struct {
	passThrough
	c *clock
}

func (*head) Kind() string { return "emu-head" }
func (h *head) Describe() string {
	return fmt.Sprintf("emu-head optimizer=%v forward=%v backward=%v", h.c.t.Optimizer, h.c.t.Forward, h.c.t.Backward)
}
func (*head) NumParams() int      { return 0 }
func (*head) Bind(_, _ []float32) {}
func (*head) Init(*rand.Rand)     {}
func (h *head) Forward(x []float32, _ int, train bool) []float32 {
	if train {
		h.c.backward = time.Now().Add(h.c.t.Optimizer + h.c.t.Forward)
		waitUntil(h.c.backward)
	}
	return x
}
func (h *head) Backward(dy []float32, _ int) []float32 {
	waitUntil(h.c.backward.Add(h.c.t.Backward))
	return dy
}

// tensor is the layer of gradient tensor k.
type tensor struct {
	passThrough
	c      *clock
	k      int
	t      Tensor
	params []float32
	grads  []float32
}

func (*tensor) Kind() string { return "emu-tensor" }
func (l *tensor) Describe() string {
	return fmt.Sprintf("emu-tensor %d floats=%d ready=%v", l.k, l.t.Len, l.t.Ready)
}
func (l *tensor) NumParams() int               { return l.t.Len }
func (l *tensor) Bind(params, grads []float32) { l.params, l.grads = params, grads }
func (l *tensor) Init(rng *rand.Rand) {
	for i := range l.params {
		l.params[i] = float32(rng.NormFloat64() * 0.01)
	}
}
func (*tensor) Forward(x []float32, _ int, _ bool) []float32 { return x }

// Backward waits until the tensor's ready time, then adds a gradient that
// depends on the batch only: element i gets dy[i mod len(dy)].
func (l *tensor) Backward(dy []float32, _ int) []float32 {
	waitUntil(l.c.backward.Add(l.t.Ready))
	if len(dy) > 0 {
		for i := range l.grads {
			l.grads[i] += dy[i%len(dy)]
		}
	}
	return dy
}
