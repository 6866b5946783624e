package model

import (
	"math"
	"math/rand/v2"
	"testing"
)

const (
	fdStep = 1e-6 // central-difference step on the float64 reference
	// gradTol bounds |analytic - numeric| / max(1, |numeric|): the analytic
	// gradient is computed in float32 (about 7 significant digits, summed
	// over at most a few hundred terms here).
	gradTol = 2e-4
	fwdTol  = 1e-5
)

func randVec(rng *rand.Rand, n int) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(rng.NormFloat64())
	}
	return v
}

func maxRelErr(t *testing.T, what string, got []float32, want []float64, tol float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: length %d, want %d", what, len(got), len(want))
	}
	worst, at := 0.0, -1
	for i := range want {
		e := math.Abs(float64(got[i])-want[i]) / math.Max(1, math.Abs(want[i]))
		if e > worst {
			worst, at = e, i
		}
	}
	if worst > tol {
		t.Errorf("%s: max relative error %.3g at %d (got %v, want %v) > %g", what, worst, at, got[at], want[at], tol)
	}
}

// checkLayer compares Forward with the reference, then Backward of the
// linear functional L = Σ y·r against central differences of the reference
// with respect to every input and every parameter.
func checkLayer(t *testing.T, spec Spec, in Shape, n int, train bool) {
	rng := rand.New(rand.NewPCG(1, 2))
	l, err := spec(in)
	if err != nil {
		t.Fatal(err)
	}
	params := make([]float32, l.NumParams())
	grads := make([]float32, l.NumParams())
	l.Bind(params, grads)
	l.Init(rng)
	for i := range params { // non-zero biases too
		params[i] += float32(rng.NormFloat64() * 0.1)
	}
	x := randVec(rng, n*in.Size())
	y := l.Forward(x, n, train)
	p64, x64 := to64(params), to64(x)
	maxRelErr(t, "forward", y, refForward(l, x64, p64, n), fwdTol)

	r := to64(randVec(rng, len(y)))
	dx := l.Backward(to32(r), n)
	loss := func(x, p []float64) float64 {
		var s float64
		for i, v := range refForward(l, x, p, n) {
			s += v * r[i]
		}
		return s
	}
	numeric := func(v []float64) []float64 {
		g := make([]float64, len(v))
		for i := range v {
			old := v[i]
			v[i] = old + fdStep
			up := loss(x64, p64)
			v[i] = old - fdStep
			down := loss(x64, p64)
			v[i] = old
			g[i] = (up - down) / (2 * fdStep)
		}
		return g
	}
	maxRelErr(t, "dL/dx", dx, numeric(x64), gradTol)
	maxRelErr(t, "dL/dparams", grads, numeric(p64), gradTol)
}

func to32(x []float64) []float32 {
	y := make([]float32, len(x))
	for i, v := range x {
		y[i] = float32(v)
	}
	return y
}

func TestLayerGradients(t *testing.T) {
	cases := []struct {
		name  string
		spec  Spec
		in    Shape
		n     int
		train bool
	}{
		{"dense", DenseSpec(5, HeNormal), Shape{7}, 3, true},
		{"dense/xavier/flattened-input", DenseSpec(4, XavierUniform), Shape{2, 3, 2}, 2, true},
		{"relu", ReLUSpec(), Shape{4, 5}, 3, true},
		{"flatten", FlattenSpec(), Shape{2, 3, 3}, 2, true},
		{"dropout/train", DropoutSpec(0.5), Shape{40}, 3, true},
		{"dropout/eval", DropoutSpec(0.5), Shape{10}, 2, false},
		{"conv2d/3x3", Conv2DSpec(3, 3, 1, 0, HeNormal), Shape{2, 6, 5}, 2, true},
		{"conv2d/pad/stride", Conv2DSpec(4, 3, 2, 1, HeNormal), Shape{3, 7, 6}, 2, true},
		{"conv2d/5x5/one-channel", Conv2DSpec(2, 5, 1, 2, XavierUniform), Shape{1, 8, 8}, 3, true},
		{"maxpool/2x2", MaxPool2DSpec(2, 2), Shape{2, 6, 6}, 2, true},
		{"maxpool/3x3/stride2/odd", MaxPool2DSpec(3, 2), Shape{3, 7, 5}, 2, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) { checkLayer(t, c.spec, c.in, c.n, c.train) })
	}
}

func TestLossGradient(t *testing.T) {
	cases := []struct {
		name   string
		n, k   int
		scale  float32
		spread float64
		labels []uint8
	}{
		{"unit-scale", 4, 10, 1, 1, []uint8{0, 3, 9, 3}},
		{"mean-scale/large-logits", 3, 5, 1.0 / 3, 30, []uint8{4, 0, 2}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(3, 4))
			z := randVec(rng, c.n*c.k)
			for i := range z {
				z[i] *= float32(c.spread)
			}
			loss := NewSoftmaxCrossEntropy(c.k)
			sum, _, grad, err := loss.Loss(z, c.labels, c.n, c.scale)
			if err != nil {
				t.Fatal(err)
			}
			z64 := to64(z)
			if want := refLoss(z64, c.labels, c.k); math.Abs(sum-want) > 1e-4*math.Max(1, want) {
				t.Errorf("loss %v, want %v", sum, want)
			}
			num := make([]float64, len(z64))
			for i := range z64 {
				old := z64[i]
				z64[i] = old + fdStep
				up := refLoss(z64, c.labels, c.k)
				z64[i] = old - fdStep
				down := refLoss(z64, c.labels, c.k)
				z64[i] = old
				num[i] = (up - down) / (2 * fdStep) * float64(c.scale)
			}
			maxRelErr(t, "dL/dlogits", grad, num, gradTol)
		})
	}
}

func TestLossRejectsBadLabel(t *testing.T) {
	loss := NewSoftmaxCrossEntropy(3)
	if _, _, _, err := loss.Loss(make([]float32, 6), []uint8{1, 3}, 2, 1); err == nil {
		t.Fatal("label 3 with 3 classes accepted")
	}
}

// TestModelGradient checks a whole Sequential model plus loss end to end
// against the float64 reference chain.
func TestModelGradient(t *testing.T) {
	cases := []struct {
		name  string
		in    Shape
		specs []Spec
	}{
		{"mlp", Shape{12}, []Spec{DenseSpec(8, HeNormal), ReLUSpec(), DenseSpec(6, HeNormal), ReLUSpec(), DenseSpec(4, XavierUniform)}},
		{"cnn", Shape{1, 10, 10}, []Spec{
			Conv2DSpec(3, 3, 1, 1, HeNormal), ReLUSpec(), MaxPool2DSpec(2, 2),
			Conv2DSpec(4, 3, 1, 0, HeNormal), ReLUSpec(), FlattenSpec(),
			DenseSpec(7, HeNormal), ReLUSpec(), DropoutSpec(0.3), DenseSpec(3, XavierUniform)}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m, err := NewSequential(c.in, c.specs...)
			if err != nil {
				t.Fatal(err)
			}
			m.Init(11)
			rng := rand.New(rand.NewPCG(5, 6))
			const n = 3
			x := randVec(rng, n*c.in.Size())
			labels := make([]uint8, n)
			for i := range labels {
				labels[i] = uint8(rng.IntN(m.Classes()))
			}
			const scale = 1.0 / n
			if _, _, err := m.TrainBatch(x, labels, n, scale); err != nil {
				t.Fatal(err)
			}
			p64 := to64(m.Params())
			x64 := to64(x)
			loss := func() float64 {
				a := x64
				for i, l := range m.Layers() {
					lo, hi := m.offsets[i], m.offsets[i]+l.NumParams()
					a = refForward(l, a, p64[lo:hi], n)
				}
				return refLoss(a, labels, m.Classes()) * scale
			}
			num := make([]float64, len(p64))
			for i := range p64 {
				old := p64[i]
				p64[i] = old + fdStep
				up := loss()
				p64[i] = old - fdStep
				down := loss()
				p64[i] = old
				num[i] = (up - down) / (2 * fdStep)
			}
			maxRelErr(t, "dL/dparams", m.Grads(), num, gradTol)
		})
	}
}
