package model

import (
	"fmt"
	"math/rand/v2"
)

// ReLU is max(0, x) elementwise.
type ReLU struct {
	shape Shape
	y, dx []float32
}

// ReLUSpec builds a ReLU for any input shape.
func ReLUSpec() Spec {
	return func(in Shape) (Layer, error) { return &ReLU{shape: append(Shape(nil), in...)}, nil }
}

func (r *ReLU) Kind() string        { return "relu" }
func (r *ReLU) Describe() string    { return fmt.Sprintf("relu(%v)", r.shape) }
func (r *ReLU) InShape() Shape      { return r.shape }
func (r *ReLU) OutShape() Shape     { return r.shape }
func (r *ReLU) NumParams() int      { return 0 }
func (r *ReLU) Bind(_, _ []float32) {}
func (r *ReLU) Init(*rand.Rand)     {}

func (r *ReLU) Forward(x []float32, n int, _ bool) []float32 {
	m := n * r.shape.Size()
	r.y = grow(r.y, m)
	for i, v := range x[:m] {
		r.y[i] = max(v, 0)
	}
	return r.y
}

func (r *ReLU) Backward(dy []float32, n int) []float32 {
	m := n * r.shape.Size()
	r.dx = grow(r.dx, m)
	y, dx := r.y[:m], r.dx[:m]
	for i, g := range dy[:m] {
		// written so the compiler emits a conditional move: the sign of y
		// is random, a branch would mispredict half the time
		if y[i] <= 0 {
			g = 0
		}
		dx[i] = g
	}
	return r.dx
}

// Flatten turns a {C,H,W} sample into a flat vector. Data are already
// contiguous, so it only changes the shape; it returns its input slices.
type Flatten struct{ in Shape }

// FlattenSpec builds a Flatten layer.
func FlattenSpec() Spec {
	return func(in Shape) (Layer, error) { return &Flatten{in: append(Shape(nil), in...)}, nil }
}

func (f *Flatten) Kind() string                                 { return "flatten" }
func (f *Flatten) Describe() string                             { return fmt.Sprintf("flatten(%v)", f.in) }
func (f *Flatten) InShape() Shape                               { return f.in }
func (f *Flatten) OutShape() Shape                              { return Shape{f.in.Size()} }
func (f *Flatten) NumParams() int                               { return 0 }
func (f *Flatten) Bind(_, _ []float32)                          {}
func (f *Flatten) Init(*rand.Rand)                              {}
func (f *Flatten) Forward(x []float32, n int, _ bool) []float32 { return x[:n*f.in.Size()] }
func (f *Flatten) Backward(dy []float32, n int) []float32       { return dy[:n*f.in.Size()] }
