package model

import (
	"fmt"
	"math/rand/v2"
)

// Dense is a fully connected layer y = x·W + b with W stored row-major as
// in×out, so a whole minibatch is one matrix product.
type Dense struct {
	in, out int
	init    Init
	skipDX  bool
	w, b    []float32 // views of the parameter arena
	dw, db  []float32 // views of the gradient arena
	x       []float32 // last input (not owned; valid until the caller reuses it)
	y, dx   []float32
}

// DenseSpec builds a Dense layer with out outputs. Its input is flattened.
func DenseSpec(out int, init Init) Spec {
	return func(in Shape) (Layer, error) {
		if out <= 0 || in.Size() <= 0 {
			return nil, fmt.Errorf("model: dense %v -> %d: sizes must be positive", in, out)
		}
		return &Dense{in: in.Size(), out: out, init: init}, nil
	}
}

func (d *Dense) Kind() string { return "dense" }
func (d *Dense) Describe() string {
	return fmt.Sprintf("dense(in=%d,out=%d,init=%v)", d.in, d.out, d.init)
}
func (d *Dense) InShape() Shape  { return Shape{d.in} }
func (d *Dense) OutShape() Shape { return Shape{d.out} }
func (d *Dense) NumParams() int  { return d.in*d.out + d.out }
func (d *Dense) skipInputGrad()  { d.skipDX = true }

func (d *Dense) Bind(params, grads []float32) {
	n := d.in * d.out
	d.w, d.b = params[:n:n], params[n:]
	d.dw, d.db = grads[:n:n], grads[n:]
}

func (d *Dense) Init(rng *rand.Rand) {
	d.init.fill(rng, d.w, d.in, d.out)
	clear(d.b)
}

// Weights returns the in×out weight view and the bias view.
func (d *Dense) Weights() (w, b []float32) { return d.w, d.b }

func (d *Dense) Forward(x []float32, n int, _ bool) []float32 {
	d.x = x[:n*d.in]
	d.y = grow(d.y, n*d.out)
	for i := 0; i < n; i++ {
		copy(d.y[i*d.out:(i+1)*d.out], d.b)
	}
	gemm(false, false, n, d.out, d.in, 1, d.x, d.in, d.w, d.out, 1, d.y, d.out)
	return d.y
}

func (d *Dense) Backward(dy []float32, n int) []float32 {
	dy = dy[:n*d.out]
	// dW += xᵀ·dy ; db += Σ rows of dy ; dx = dy·Wᵀ
	gemm(true, false, d.in, d.out, n, 1, d.x, d.in, dy, d.out, 1, d.dw, d.out)
	for i := 0; i < n; i++ {
		row := dy[i*d.out : (i+1)*d.out]
		for j, v := range row {
			d.db[j] += v
		}
	}
	if d.skipDX {
		return nil
	}
	d.dx = grow(d.dx, n*d.in)
	gemm(false, true, n, d.in, d.out, 1, dy, d.out, d.w, d.out, 0, d.dx, d.in)
	return d.dx
}
