package model

import (
	"fmt"
	"math"
)

// SoftmaxCrossEntropy is the softmax followed by the negative
// log-likelihood of integer class labels, fused for numerical stability.
type SoftmaxCrossEntropy struct {
	classes int
	grad    []float32
}

// NewSoftmaxCrossEntropy returns the loss for the given number of classes.
func NewSoftmaxCrossEntropy(classes int) *SoftmaxCrossEntropy {
	return &SoftmaxCrossEntropy{classes: classes}
}

// Loss evaluates n samples of logits (n×classes) against labels. It returns
// the sum (not the mean) of the per-sample losses, the number of samples
// whose arg-max equals the label, and dL/dlogits of scale·Σ loss_i. Callers
// pick scale = 1/globalBatch so that gradients summed across peers equal the
// gradient of the global mean loss. The gradient slice is owned by the loss
// and valid until the next call. A label outside [0, classes) is an error.
func (s *SoftmaxCrossEntropy) Loss(logits []float32, labels []uint8, n int, scale float32) (sum float64, correct int, grad []float32, err error) {
	k := s.classes
	if len(logits) < n*k || len(labels) < n {
		return 0, 0, nil, fmt.Errorf("model: loss on %d samples needs %d logits and %d labels, got %d and %d", n, n*k, n, len(logits), len(labels))
	}
	s.grad = grow(s.grad, n*k)
	for i := 0; i < n; i++ {
		z := logits[i*k:][:k]
		g := s.grad[i*k:][:k]
		y := int(labels[i])
		if y >= k {
			return 0, 0, nil, fmt.Errorf("model: label %d of sample %d outside [0,%d)", y, i, k)
		}
		zmax, arg := z[0], 0
		for j, v := range z {
			if v > zmax {
				zmax, arg = v, j
			}
		}
		if arg == y {
			correct++
		}
		var den float64
		for j, v := range z {
			e := math.Exp(float64(v - zmax))
			g[j] = float32(e)
			den += e
		}
		sum += math.Log(den) - float64(z[y]-zmax)
		inv := 1 / den
		for j := range g {
			g[j] = float32(float64(g[j])*inv) * scale
		}
		g[y] -= scale
	}
	return sum, correct, s.grad[:n*k], nil
}
