package model

import (
	"fmt"
	"math/rand/v2"
)

// MaxPool2D takes the maximum over K×K windows with the given stride on
// {C,H,W} samples. It remembers the arg-max of every window for Backward.
type MaxPool2D struct {
	c, h, w, k, stride, oh, ow int
	arg                        []int32 // index within the sample of each output's max
	y, dx                      []float32
}

// MaxPool2DSpec builds a max-pooling layer (no padding).
func MaxPool2DSpec(kernel, stride int) Spec {
	return func(in Shape) (Layer, error) {
		if len(in) != 3 || kernel <= 0 || stride <= 0 {
			return nil, fmt.Errorf("model: maxpool2d(k=%d, stride=%d) on %v: need a {C,H,W} input and positive sizes", kernel, stride, in)
		}
		l := &MaxPool2D{c: in[0], h: in[1], w: in[2], k: kernel, stride: stride}
		l.oh = (l.h-kernel)/stride + 1
		l.ow = (l.w-kernel)/stride + 1
		if l.oh <= 0 || l.ow <= 0 {
			return nil, fmt.Errorf("model: maxpool2d kernel %d does not fit input %v", kernel, in)
		}
		return l, nil
	}
}

func (l *MaxPool2D) Kind() string { return "maxpool2d" }
func (l *MaxPool2D) Describe() string {
	return fmt.Sprintf("maxpool2d(in=%v,k=%d,stride=%d)", l.InShape(), l.k, l.stride)
}
func (l *MaxPool2D) InShape() Shape      { return Shape{l.c, l.h, l.w} }
func (l *MaxPool2D) OutShape() Shape     { return Shape{l.c, l.oh, l.ow} }
func (l *MaxPool2D) NumParams() int      { return 0 }
func (l *MaxPool2D) Bind(_, _ []float32) {}
func (l *MaxPool2D) Init(*rand.Rand)     {}

func (l *MaxPool2D) Forward(x []float32, n int, _ bool) []float32 {
	in, out := l.c*l.h*l.w, l.c*l.oh*l.ow
	l.y = grow(l.y, n*out)
	if cap(l.arg) < n*out {
		l.arg = make([]int32, n*out)
	}
	l.arg = l.arg[:n*out]
	for i := 0; i < n; i++ {
		xs := x[i*in:][:in]
		o := i * out
		for c := 0; c < l.c; c++ {
			base := c * l.h * l.w
			for oy := 0; oy < l.oh; oy++ {
				for ox := 0; ox < l.ow; ox++ {
					best := base + oy*l.stride*l.w + ox*l.stride
					bv := xs[best]
					for ky := 0; ky < l.k; ky++ {
						row := base + (oy*l.stride+ky)*l.w + ox*l.stride
						for kx := 0; kx < l.k; kx++ {
							if v := xs[row+kx]; v > bv {
								bv, best = v, row+kx
							}
						}
					}
					l.y[o] = bv
					l.arg[o] = int32(best)
					o++
				}
			}
		}
	}
	return l.y
}

func (l *MaxPool2D) Backward(dy []float32, n int) []float32 {
	in, out := l.c*l.h*l.w, l.c*l.oh*l.ow
	l.dx = grow(l.dx, n*in)
	clear(l.dx)
	for i := 0; i < n; i++ {
		dx := l.dx[i*in:][:in]
		for j, g := range dy[i*out:][:out] {
			dx[l.arg[i*out+j]] += g
		}
	}
	return l.dx
}
