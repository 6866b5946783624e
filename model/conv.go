package model

import (
	"fmt"
	"math/rand/v2"
)

// Conv2D is a 2-D convolution (cross-correlation) over {C,H,W} samples with
// F filters of size K×K, stride and zero padding. A whole minibatch is
// lowered with im2col to one matrix of shape (C·K·K)×(n·OH·OW), so forward
// and both backward products are single large GEMMs.
type Conv2D struct {
	c, h, w         int
	f, k            int
	stride, pad     int
	oh, ow          int
	init            Init
	skipDX          bool
	wt, b           []float32 // F×(C·K·K) weights, F biases (arena views)
	dwt, db         []float32
	cols, tmp       []float32 // im2col matrix; F×(n·P) product
	dcols, dtmp, dx []float32
	y               []float32
}

// Conv2DSpec builds a convolution with the given number of filters, kernel
// size, stride and padding.
func Conv2DSpec(filters, kernel, stride, pad int, init Init) Spec {
	return func(in Shape) (Layer, error) {
		if len(in) != 3 {
			return nil, fmt.Errorf("model: conv2d needs a {C,H,W} input, got %v", in)
		}
		if filters <= 0 || kernel <= 0 || stride <= 0 || pad < 0 {
			return nil, fmt.Errorf("model: conv2d filters=%d kernel=%d stride=%d pad=%d out of range", filters, kernel, stride, pad)
		}
		l := &Conv2D{c: in[0], h: in[1], w: in[2], f: filters, k: kernel, stride: stride, pad: pad, init: init}
		l.oh = (l.h+2*pad-kernel)/stride + 1
		l.ow = (l.w+2*pad-kernel)/stride + 1
		if l.c <= 0 || l.oh <= 0 || l.ow <= 0 {
			return nil, fmt.Errorf("model: conv2d kernel %d does not fit input %v with pad %d", kernel, in, pad)
		}
		return l, nil
	}
}

func (l *Conv2D) Kind() string { return "conv2d" }
func (l *Conv2D) Describe() string {
	return fmt.Sprintf("conv2d(in=%v,filters=%d,k=%d,stride=%d,pad=%d,init=%v)", l.InShape(), l.f, l.k, l.stride, l.pad, l.init)
}
func (l *Conv2D) InShape() Shape  { return Shape{l.c, l.h, l.w} }
func (l *Conv2D) OutShape() Shape { return Shape{l.f, l.oh, l.ow} }
func (l *Conv2D) NumParams() int  { return l.f*l.c*l.k*l.k + l.f }
func (l *Conv2D) skipInputGrad()  { l.skipDX = true }

func (l *Conv2D) Bind(params, grads []float32) {
	n := l.f * l.c * l.k * l.k
	l.wt, l.b = params[:n:n], params[n:]
	l.dwt, l.db = grads[:n:n], grads[n:]
}

func (l *Conv2D) Init(rng *rand.Rand) {
	l.init.fill(rng, l.wt, l.c*l.k*l.k, l.f*l.k*l.k)
	clear(l.b)
}

// im2col writes column i*P+p of cols for every sample i and output position
// p: row (c,ki,kj) holds the input pixel under kernel tap (ki,kj).
func (l *Conv2D) im2col(x []float32, n int) {
	P := l.oh * l.ow
	np := n * P
	in := l.c * l.h * l.w
	for c := 0; c < l.c; c++ {
		for ki := 0; ki < l.k; ki++ {
			for kj := 0; kj < l.k; kj++ {
				row := l.cols[((c*l.k+ki)*l.k+kj)*np:][:np]
				for i := 0; i < n; i++ {
					img := x[i*in+c*l.h*l.w:][:l.h*l.w]
					dst := row[i*P:][:P]
					for oy := 0; oy < l.oh; oy++ {
						iy := oy*l.stride - l.pad + ki
						d := dst[oy*l.ow:][:l.ow]
						if iy < 0 || iy >= l.h {
							clear(d)
							continue
						}
						src := img[iy*l.w:][:l.w]
						for ox := range d {
							ix := ox*l.stride - l.pad + kj
							if ix < 0 || ix >= l.w {
								d[ox] = 0
							} else {
								d[ox] = src[ix]
							}
						}
					}
				}
			}
		}
	}
}

// col2im is the adjoint of im2col: it adds every column entry back onto the
// input pixel it came from.
func (l *Conv2D) col2im(dx []float32, n int) {
	P := l.oh * l.ow
	np := n * P
	in := l.c * l.h * l.w
	clear(dx)
	for c := 0; c < l.c; c++ {
		for ki := 0; ki < l.k; ki++ {
			for kj := 0; kj < l.k; kj++ {
				row := l.dcols[((c*l.k+ki)*l.k+kj)*np:][:np]
				for i := 0; i < n; i++ {
					img := dx[i*in+c*l.h*l.w:][:l.h*l.w]
					src := row[i*P:][:P]
					for oy := 0; oy < l.oh; oy++ {
						iy := oy*l.stride - l.pad + ki
						if iy < 0 || iy >= l.h {
							continue
						}
						dst := img[iy*l.w:][:l.w]
						s := src[oy*l.ow:][:l.ow]
						for ox, v := range s {
							ix := ox*l.stride - l.pad + kj
							if ix >= 0 && ix < l.w {
								dst[ix] += v
							}
						}
					}
				}
			}
		}
	}
}

func (l *Conv2D) Forward(x []float32, n int, _ bool) []float32 {
	P := l.oh * l.ow
	ckk := l.c * l.k * l.k
	l.cols = grow(l.cols, ckk*n*P)
	l.tmp = grow(l.tmp, l.f*n*P)
	l.y = grow(l.y, n*l.f*P)
	l.im2col(x, n)
	gemm(false, false, l.f, n*P, ckk, 1, l.wt, ckk, l.cols, n*P, 0, l.tmp, n*P)
	// tmp is F×(n·P); the output is n×F×P.
	for f := 0; f < l.f; f++ {
		bias := l.b[f]
		src := l.tmp[f*n*P:][:n*P]
		for i := 0; i < n; i++ {
			dst := l.y[(i*l.f+f)*P:][:P]
			for p, v := range src[i*P : (i+1)*P] {
				dst[p] = v + bias
			}
		}
	}
	return l.y
}

func (l *Conv2D) Backward(dy []float32, n int) []float32 {
	P := l.oh * l.ow
	ckk := l.c * l.k * l.k
	l.dtmp = grow(l.dtmp, l.f*n*P)
	for f := 0; f < l.f; f++ {
		dst := l.dtmp[f*n*P:][:n*P]
		var s float32
		for i := 0; i < n; i++ {
			src := dy[(i*l.f+f)*P:][:P]
			copy(dst[i*P:], src)
			for _, v := range src {
				s += v
			}
		}
		l.db[f] += s
	}
	gemm(false, true, l.f, ckk, n*P, 1, l.dtmp, n*P, l.cols, n*P, 1, l.dwt, ckk)
	if l.skipDX {
		return nil
	}
	l.dcols = grow(l.dcols, ckk*n*P)
	gemm(true, false, ckk, n*P, l.f, 1, l.wt, ckk, l.dtmp, n*P, 0, l.dcols, n*P)
	l.dx = grow(l.dx, n*l.c*l.h*l.w)
	l.col2im(l.dx, n)
	return l.dx
}
