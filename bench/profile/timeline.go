package profile

import "fmt"

// Timeline is a profile reduced to what a step simulation needs: forward,
// backward and optimizer time, and every gradient of the flat arena with the
// time (ms from the start of backward) it becomes ready, in ready order.
type Timeline struct {
	ForwardMs   float64
	BackwardMs  float64
	OptimizerMs float64 // step time not covered by forward+backward
	Grads       []Tensor
}

// StepMs is the single-GPU step time: forward + backward + optimizer.
func (t Timeline) StepMs() float64 { return t.ForwardMs + t.BackwardMs + t.OptimizerMs }

// Params is the number of gradient elements in the timeline.
func (t Timeline) Params() int64 {
	var n int64
	for _, g := range t.Grads {
		n += g.Numel
	}
	return n
}

// untrackedName names the tensor standing for gradients the profile did not
// time (see the package comment).
const untrackedName = "(untracked)"

// Timeline returns the step timeline of a validated profile. The instrumented
// forward and backward come from one step while StepMs is a median of many;
// when they add up to more than StepMs, both (and every ready time) are scaled
// down to fit so that the one-GPU step time is StepMs exactly.
func (p Profile) Timeline() Timeline {
	fwd, bwd := p.ForwardMs, p.BackwardMs
	k := 1.0
	if fwd+bwd > p.StepMs {
		k = p.StepMs / (fwd + bwd)
	}
	t := Timeline{ForwardMs: fwd * k, BackwardMs: bwd * k}
	t.OptimizerMs = max(0, p.StepMs-t.ForwardMs-t.BackwardMs)
	t.Grads = make([]Tensor, 0, len(p.GradReady)+1)
	var sum int64
	for _, g := range p.GradReady {
		g.ReadyMs = min(g.ReadyMs*k, t.BackwardMs)
		t.Grads = append(t.Grads, g)
		sum += g.Numel
	}
	if rest := p.Params - sum; rest > 0 {
		t.Grads = append(t.Grads, Tensor{Name: untrackedName, Numel: rest, ReadyMs: t.BackwardMs})
	}
	return t
}

// ScaleTo returns a copy of p whose timeline (step, forward, backward and every
// ready time) is stretched so that its median step takes stepMs, for a GPU
// that was not measured but whose step time is known. The gradient order and
// the relative timing within backward are kept: an approximation, since older
// GPUs do not slow every layer by the same factor.
func (p Profile) ScaleTo(stepMs float64, gpu, source string) (Profile, error) {
	if !(stepMs > 0) {
		return Profile{}, fmt.Errorf("%w: scale %s to step %v ms", ErrInvalid, p.Model, stepMs)
	}
	k := stepMs / p.StepMs
	q := p
	q.GPU = gpu
	q.StepMs = stepMs
	q.StepMsMin *= k
	q.StepMsMax *= k
	q.ForwardMs *= k
	q.BackwardMs *= k
	q.SamplesPerS = float64(p.BatchPerGPU) / (stepMs / 1000)
	q.GradReady = make([]Tensor, len(p.GradReady))
	for i, g := range p.GradReady {
		g.ReadyMs *= k
		q.GradReady[i] = g
	}
	q.Derived = fmt.Sprintf("%s step %.1f ms from %s; timeline of %s scaled by %.3f", gpu, stepMs, source, p.GPU, k)
	return q, q.Validate()
}
