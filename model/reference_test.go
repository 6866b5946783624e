package model

import (
	"fmt"
	"math"
)

// Float64 reference implementations, written as naive loops independent of
// the BLAS/im2col code under test. Finite differences are taken on these, so
// float32 rounding does not drown the check.

func refForward(l Layer, x, p []float64, n int) []float64 {
	switch l := l.(type) {
	case *Dense:
		y := make([]float64, n*l.out)
		for i := 0; i < n; i++ {
			for o := 0; o < l.out; o++ {
				s := p[l.in*l.out+o]
				for k := 0; k < l.in; k++ {
					s += x[i*l.in+k] * p[k*l.out+o]
				}
				y[i*l.out+o] = s
			}
		}
		return y
	case *ReLU:
		y := make([]float64, len(x))
		for i, v := range x {
			y[i] = math.Max(v, 0)
		}
		return y
	case *Flatten:
		return append([]float64(nil), x...)
	case *Dropout:
		if !l.active {
			return append([]float64(nil), x...)
		}
		y := make([]float64, len(x))
		for i, v := range x {
			y[i] = v * float64(l.mask[i])
		}
		return y
	case *Conv2D:
		y := make([]float64, n*l.f*l.oh*l.ow)
		nw := l.f * l.c * l.k * l.k
		for i := 0; i < n; i++ {
			for f := 0; f < l.f; f++ {
				for oy := 0; oy < l.oh; oy++ {
					for ox := 0; ox < l.ow; ox++ {
						s := p[nw+f]
						for c := 0; c < l.c; c++ {
							for ky := 0; ky < l.k; ky++ {
								for kx := 0; kx < l.k; kx++ {
									iy, ix := oy*l.stride-l.pad+ky, ox*l.stride-l.pad+kx
									if iy < 0 || iy >= l.h || ix < 0 || ix >= l.w {
										continue
									}
									s += p[((f*l.c+c)*l.k+ky)*l.k+kx] * x[((i*l.c+c)*l.h+iy)*l.w+ix]
								}
							}
						}
						y[((i*l.f+f)*l.oh+oy)*l.ow+ox] = s
					}
				}
			}
		}
		return y
	case *MaxPool2D:
		y := make([]float64, n*l.c*l.oh*l.ow)
		for i := 0; i < n; i++ {
			for c := 0; c < l.c; c++ {
				for oy := 0; oy < l.oh; oy++ {
					for ox := 0; ox < l.ow; ox++ {
						m := math.Inf(-1)
						for ky := 0; ky < l.k; ky++ {
							for kx := 0; kx < l.k; kx++ {
								m = math.Max(m, x[((i*l.c+c)*l.h+oy*l.stride+ky)*l.w+ox*l.stride+kx])
							}
						}
						y[((i*l.c+c)*l.oh+oy)*l.ow+ox] = m
					}
				}
			}
		}
		return y
	}
	panic(fmt.Sprintf("no reference for %T", l))
}

// refLoss is the summed softmax cross-entropy in float64.
func refLoss(z []float64, labels []uint8, k int) float64 {
	var sum float64
	for i := range labels {
		row := z[i*k : (i+1)*k]
		m := math.Inf(-1)
		for _, v := range row {
			m = math.Max(m, v)
		}
		var den float64
		for _, v := range row {
			den += math.Exp(v - m)
		}
		sum += math.Log(den) + m - row[labels[i]]
	}
	return sum
}

func to64(x []float32) []float64 {
	y := make([]float64, len(x))
	for i, v := range x {
		y[i] = float64(v)
	}
	return y
}
