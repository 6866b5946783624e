// Package profile loads and checks per-GPU training-step compute profiles
// (bench/calibration/*.json, written by gpu_profile.py) for the scaling
// emulation and simulator, and derives profiles of other GPUs by scaling a
// measured timeline to a published step time.
//
// Invariants of a profile that passed Validate:
//   - params > 0 and grad_bytes_fp32 == 4*params;
//   - step, forward and backward times are positive and finite;
//   - grad_ready is non-empty, each tensor has numel > 0, ready times are
//     non-decreasing, within [0, backward] (plus a small tolerance for event
//     timing), and the tensors' numel sum to at most params.
//
// Gradients a profile did not see become ready (Inception V3's auxiliary
// classifier, whose output gpu_profile.py discards) are still part of the
// flat gradient arena ringtrain all-reduces: Grads reports them as one
// tensor ready at the end of backward.
package profile

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
)

// ErrInvalid is wrapped by every validation error.
var ErrInvalid = errors.New("invalid profile")

// File is one calibration file: the GPU and software it was measured with and
// one profile per (model, batch, dtype) configuration.
type File struct {
	GPU         string    `json:"gpu"`
	Torch       string    `json:"torch"`
	Torchvision string    `json:"torchvision"`
	Profiles    []Profile `json:"profiles"`
	Errors      []string  `json:"errors"`
}

// Profile is the compute profile of one training configuration on one GPU.
type Profile struct {
	GPU           string   `json:"gpu,omitempty"` // filled from File.GPU by Load/Parse
	Model         string   `json:"model"`
	BatchPerGPU   int      `json:"batch_per_gpu"`
	DType         string   `json:"dtype"`
	Params        int64    `json:"params"`
	GradBytesFP32 int64    `json:"grad_bytes_fp32"`
	StepMs        float64  `json:"step_ms_median"`
	StepMsMin     float64  `json:"step_ms_min"`
	StepMsMax     float64  `json:"step_ms_max"`
	ForwardMs     float64  `json:"instrumented_forward_ms"`
	BackwardMs    float64  `json:"instrumented_backward_ms"`
	SamplesPerS   float64  `json:"samples_per_s"`
	GradReady     []Tensor `json:"grad_ready"`
	// Derived is empty for a measured profile; for one made by ScaleTo it
	// says where its step time came from.
	Derived string `json:"derived,omitempty"`
}

// Tensor is one parameter tensor and the time, in ms from the start of
// backward, at which its gradient was ready.
type Tensor struct {
	Name    string  `json:"name"`
	Numel   int64   `json:"numel"`
	ReadyMs float64 `json:"ready_ms"`
}

// maxParams bounds a model's size (2^40 parameters) so that byte counts and
// sums of tensor sizes cannot overflow int64.
const maxParams = 1 << 40

// readyToleranceMs allows event timestamps to land a little after the
// recorded end of backward (they are taken on the same stream).
const readyToleranceMs = 0.05

// Load reads and validates a calibration file.
func Load(path string) (*File, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("profile: %w", err)
	}
	defer f.Close()
	pf, err := Parse(f)
	if err != nil {
		return nil, fmt.Errorf("profile: %s: %w", path, err)
	}
	return pf, nil
}

// Parse decodes and validates a calibration file from r.
func Parse(r io.Reader) (*File, error) {
	var f File
	dec := json.NewDecoder(r)
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("%w: decode: %v", ErrInvalid, err)
	}
	if len(f.Profiles) == 0 {
		return nil, fmt.Errorf("%w: no profiles", ErrInvalid)
	}
	for i := range f.Profiles {
		p := &f.Profiles[i]
		if p.GPU == "" {
			p.GPU = f.GPU
		}
		if err := p.Validate(); err != nil {
			return nil, err
		}
	}
	return &f, nil
}

// Validate checks the invariants listed in the package comment.
func (p *Profile) Validate() error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: %s/b%d/%s: %s", ErrInvalid, p.Model, p.BatchPerGPU, p.DType, fmt.Sprintf(format, a...))
	}
	pos := func(v float64) bool { return v > 0 && !math.IsInf(v, 0) && !math.IsNaN(v) }
	switch {
	case p.Model == "":
		return bad("empty model name")
	case p.BatchPerGPU <= 0:
		return bad("batch %d", p.BatchPerGPU)
	case p.Params <= 0 || p.Params > maxParams:
		return bad("params %d outside (0, %d]", p.Params, int64(maxParams))
	case p.GradBytesFP32 != 4*p.Params:
		return bad("grad_bytes_fp32 %d != 4*params %d", p.GradBytesFP32, 4*p.Params)
	case !pos(p.StepMs) || !pos(p.ForwardMs) || !pos(p.BackwardMs):
		return bad("times step %v forward %v backward %v", p.StepMs, p.ForwardMs, p.BackwardMs)
	case len(p.GradReady) == 0:
		return bad("no grad_ready timeline")
	}
	var sum int64
	prev := 0.0
	seen := make(map[string]bool, len(p.GradReady))
	for i, t := range p.GradReady {
		switch {
		case t.Numel <= 0 || t.Numel > p.Params:
			return bad("tensor %d %q numel %d", i, t.Name, t.Numel)
		case math.IsNaN(t.ReadyMs) || t.ReadyMs < 0 || t.ReadyMs > p.BackwardMs+readyToleranceMs:
			return bad("tensor %d %q ready %v ms outside [0, %v]", i, t.Name, t.ReadyMs, p.BackwardMs)
		case t.ReadyMs < prev:
			return bad("tensor %d %q ready %v ms before previous %v ms", i, t.Name, t.ReadyMs, prev)
		case seen[t.Name]:
			return bad("tensor %q listed twice", t.Name)
		}
		seen[t.Name] = true
		prev = t.ReadyMs
		sum += t.Numel
		if sum > p.Params {
			return bad("grad_ready numel sum exceeds params %d", p.Params)
		}
	}
	return nil
}

// Find returns the profile for model, preferring dtype when it is not empty
// and otherwise fp32, then the first listed.
func (f *File) Find(model, dtype string) (Profile, error) {
	var first *Profile
	for i := range f.Profiles {
		p := &f.Profiles[i]
		if p.Model != model {
			continue
		}
		if dtype != "" && p.DType == dtype {
			return *p, nil
		}
		if dtype == "" && p.DType == "fp32" {
			return *p, nil
		}
		if first == nil {
			first = p
		}
	}
	if first == nil || dtype != "" {
		return Profile{}, fmt.Errorf("profile: no profile for model %q dtype %q in %s", model, dtype, f.GPU)
	}
	return *first, nil
}

// Models lists the distinct model names in file order.
func (f *File) Models() []string {
	var out []string
	seen := map[string]bool{}
	for _, p := range f.Profiles {
		if !seen[p.Model] {
			seen[p.Model] = true
			out = append(out, p.Model)
		}
	}
	return out
}
