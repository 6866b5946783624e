package model

import (
	"fmt"
	"math"
	"math/rand/v2"
)

// Shape is the shape of one sample (without the batch dimension), e.g.
// {784} for a flat vector or {C, H, W} for an image.
type Shape []int

// Size is the number of elements of one sample.
func (s Shape) Size() int {
	n := 1
	for _, d := range s {
		n *= d
	}
	return n
}

func (s Shape) String() string { return fmt.Sprint([]int(s)) }

// Layer is one stage of a Sequential model. A layer owns its output and
// input-gradient buffers: the slices Forward and Backward return stay valid
// until the next call of the same method.
type Layer interface {
	// Kind is the layer's type name, e.g. "dense".
	Kind() string
	// Describe states kind, shapes and hyper-parameters; it feeds the model
	// fingerprint, so two layers with the same description are
	// interchangeable.
	Describe() string
	InShape() Shape
	OutShape() Shape
	// NumParams is the number of float32 parameters the layer needs in the
	// arena (0 for parameter-free layers).
	NumParams() int
	// Bind hands the layer its views of the parameter and gradient arenas;
	// both have length NumParams().
	Bind(params, grads []float32)
	// Init fills the layer's parameters from rng.
	Init(rng *rand.Rand)
	// Forward computes the output for n samples of x (len n*InShape.Size()).
	// train selects training behaviour (dropout active).
	Forward(x []float32, n int, train bool) []float32
	// Backward takes dL/dy for the n samples of the last Forward, adds the
	// parameter gradients into the gradient arena and returns dL/dx.
	Backward(dy []float32, n int) []float32
}

// Spec builds a layer for a given input shape; Sequential chains specs.
type Spec func(in Shape) (Layer, error)

// Init selects a weight initialisation scheme.
type Init int

const (
	// HeNormal draws N(0, 2/fanIn): for layers followed by ReLU (He et al. 2015).
	HeNormal Init = iota
	// XavierUniform draws U(±sqrt(6/(fanIn+fanOut))) (Glorot & Bengio 2010).
	XavierUniform
)

func (i Init) String() string {
	switch i {
	case HeNormal:
		return "he"
	case XavierUniform:
		return "xavier"
	}
	return fmt.Sprintf("init(%d)", int(i))
}

// fill initialises w for the given fan-in and fan-out.
func (i Init) fill(rng *rand.Rand, w []float32, fanIn, fanOut int) {
	switch i {
	case XavierUniform:
		a := math.Sqrt(6 / float64(fanIn+fanOut))
		for j := range w {
			w[j] = float32((rng.Float64()*2 - 1) * a)
		}
	default:
		sd := math.Sqrt(2 / float64(fanIn))
		for j := range w {
			w[j] = float32(rng.NormFloat64() * sd)
		}
	}
}
