package model

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
)

// Model is a Sequential stack of layers over one parameter arena and one
// gradient arena, ending in a softmax cross-entropy loss.
type Model struct {
	in      Shape
	layers  []Layer
	offsets []int // offsets[i] is layer i's first parameter in the arena
	params  []float32
	grads   []float32
	loss    *SoftmaxCrossEntropy
	dropout []*Dropout
	ready   func(i int, r ParamRange) // see SetGradReady
}

// ParamRange is one layer's parameters in the arena: Params()[Off:Off+Len],
// and its gradients at the same place in Grads().
type ParamRange struct{ Layer, Off, Len int }

// inputGradSkipper is implemented by layers that can skip computing dL/dx
// when they are first in the model and nobody consumes it.
type inputGradSkipper interface{ skipInputGrad() }

// NewSequential builds the layers of specs in order for samples of shape in,
// allocates the two arenas and binds every layer to its views. Parameters
// are zero until Init.
func NewSequential(in Shape, specs ...Spec) (*Model, error) {
	if len(specs) == 0 || in.Size() <= 0 {
		return nil, fmt.Errorf("model: sequential needs layers and a positive input shape, got %d layers on %v", len(specs), in)
	}
	m := &Model{in: append(Shape(nil), in...)}
	shape, total := m.in, 0
	for i, spec := range specs {
		l, err := spec(shape)
		if err != nil {
			return nil, fmt.Errorf("model: layer %d: %w", i, err)
		}
		m.layers = append(m.layers, l)
		m.offsets = append(m.offsets, total)
		total += l.NumParams()
		shape = l.OutShape()
		if d, ok := l.(*Dropout); ok {
			d.salt = splitmix64(uint64(i))
			m.dropout = append(m.dropout, d)
		}
	}
	if s, ok := m.layers[0].(inputGradSkipper); ok {
		s.skipInputGrad()
	}
	m.params = make([]float32, total)
	m.grads = make([]float32, total)
	for i, l := range m.layers {
		lo, hi := m.offsets[i], m.offsets[i]+l.NumParams()
		l.Bind(m.params[lo:hi:hi], m.grads[lo:hi:hi])
	}
	m.loss = NewSoftmaxCrossEntropy(shape.Size())
	return m, nil
}

// Init initialises every layer's parameters from seed; each layer draws
// from its own stream, so the result depends only on seed and architecture.
func (m *Model) Init(seed uint64) {
	for i, l := range m.layers {
		l.Init(rand.New(rand.NewPCG(seed, uint64(i))))
	}
}

// Params is the parameter arena; layers' weights are views into it.
func (m *Model) Params() []float32 { return m.params }

// Grads is the gradient arena, the same length and layout as Params.
func (m *Model) Grads() []float32 { return m.grads }

// Layers returns the model's layers in order.
func (m *Model) Layers() []Layer { return m.layers }

// InShape is the shape of one input sample.
func (m *Model) InShape() Shape { return m.in }

// Classes is the number of outputs (logits) per sample.
func (m *Model) Classes() int { return m.layers[len(m.layers)-1].OutShape().Size() }

// ZeroGrad clears the gradient arena.
func (m *Model) ZeroGrad() { clear(m.grads) }

// SetSampleKeys sets the per-sample dropout keys for the next forward
// passes (see Dropout). keys is retained.
func (m *Model) SetSampleKeys(keys []uint64) {
	for _, d := range m.dropout {
		d.SetSampleKeys(keys)
	}
}

// Forward runs n samples of x through every layer and returns the logits.
func (m *Model) Forward(x []float32, n int, train bool) []float32 {
	for _, l := range m.layers {
		x = l.Forward(x, n, train)
	}
	return x
}

// GradOrder lists the layers that have parameters in the order Backward
// finishes their gradients: last layer first. Consecutive entries are
// adjacent in the arena.
func (m *Model) GradOrder() []ParamRange {
	var out []ParamRange
	for i := len(m.layers) - 1; i >= 0; i-- {
		if n := m.layers[i].NumParams(); n > 0 {
			out = append(out, ParamRange{Layer: i, Off: m.offsets[i], Len: n})
		}
	}
	return out
}

// SetGradReady sets fn to be called during Backward as soon as a layer's
// gradients are final, with the layer's position i in GradOrder and its
// range; fn runs on the goroutine of Backward, before the layers below are
// computed, so a caller can start reducing those gradients while backward
// goes on (it must not write them). nil removes the callback.
func (m *Model) SetGradReady(fn func(i int, r ParamRange)) { m.ready = fn }

// Backward propagates dL/dlogits back through every layer, accumulating
// parameter gradients into the gradient arena.
func (m *Model) Backward(dy []float32, n int) {
	k := 0
	for i := len(m.layers) - 1; i >= 0; i-- {
		l := m.layers[i]
		dy = l.Backward(dy, n)
		if np := l.NumParams(); np > 0 {
			if m.ready != nil {
				m.ready(k, ParamRange{Layer: i, Off: m.offsets[i], Len: np})
			}
			k++
		}
	}
}

func (m *Model) checkBatch(x []float32, labels []uint8, n int) error {
	if n < 0 || len(x) < n*m.in.Size() || len(labels) < n {
		return fmt.Errorf("model: batch of %d samples needs %d inputs and %d labels, got %d and %d", n, n*m.in.Size(), n, len(x), len(labels))
	}
	return nil
}

// TrainBatch zeroes the gradients and runs forward, loss and backward on n
// samples in training mode. The gradient arena then holds
// scale·Σ_i ∇loss_i. It returns the summed loss and the number of correct
// predictions. With n == 0 the gradients are zero.
func (m *Model) TrainBatch(x []float32, labels []uint8, n int, scale float32) (lossSum float64, correct int, err error) {
	m.ZeroGrad()
	if err := m.checkBatch(x, labels, n); err != nil || n == 0 {
		return 0, 0, err
	}
	logits := m.Forward(x, n, true)
	lossSum, correct, grad, err := m.loss.Loss(logits, labels, n, scale)
	if err != nil {
		return 0, 0, err
	}
	m.Backward(grad, n)
	return lossSum, correct, nil
}

// EvalBatch runs n samples in evaluation mode and returns the summed loss
// and the number of correct predictions.
func (m *Model) EvalBatch(x []float32, labels []uint8, n int) (lossSum float64, correct int, err error) {
	if err := m.checkBatch(x, labels, n); err != nil || n == 0 {
		return 0, 0, err
	}
	logits := m.Forward(x, n, false)
	lossSum, correct, _, err = m.loss.Loss(logits, labels, n, 0)
	return lossSum, correct, err
}

// Fingerprint is a SHA-256 over the architecture: the input shape and each
// layer's description (kind, shapes, hyper-parameters), in order. Peers
// compare fingerprints before joining a ring so that gradients are only
// ever averaged between identical models. Parameter values do not enter.
func (m *Model) Fingerprint() [32]byte {
	h := sha256.New()
	fmt.Fprintf(h, "ringtrain-model/1 in=%v params=%d\n", m.in, len(m.params))
	for _, l := range m.layers {
		var n [8]byte
		d := l.Describe()
		binary.LittleEndian.PutUint64(n[:], uint64(len(d)))
		h.Write(n[:])
		h.Write([]byte(d))
	}
	var out [32]byte
	h.Sum(out[:0])
	return out
}

// String lists the layers and the parameter count.
func (m *Model) String() string {
	s := fmt.Sprintf("input %v\n", m.in)
	for i, l := range m.layers {
		s += fmt.Sprintf("%2d %-60s -> %v params=%d\n", i, l.Describe(), l.OutShape(), l.NumParams())
	}
	return s + fmt.Sprintf("total params %d\n", len(m.params))
}
