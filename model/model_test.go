package model

import (
	"math/rand/v2"
	"runtime/metrics"
	"testing"
)

func TestZooShapes(t *testing.T) {
	cases := []struct {
		name   string
		build  func(uint64) (*Model, error)
		params int
	}{
		// 784·256+256 + 256·128+128 + 128·10+10
		{"mlp", NewMLP, 235146},
		// conv1 20·25+20, conv2 50·500+50, dense 800·500+500, dense 500·10+10
		{"cnn", NewCNN, 431080},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m, err := c.build(1)
			if err != nil {
				t.Fatal(err)
			}
			if got := len(m.Params()); got != c.params {
				t.Errorf("params = %d, want %d\n%v", got, c.params, m)
			}
			if len(m.Grads()) != len(m.Params()) || m.Classes() != 10 {
				t.Errorf("grads %d, classes %d", len(m.Grads()), m.Classes())
			}
		})
	}
}

func TestInitDeterministic(t *testing.T) {
	a, _ := NewMLP(7)
	b, _ := NewMLP(7)
	c, _ := NewMLP(8)
	if !equal32(a.Params(), b.Params()) {
		t.Error("same seed gave different parameters")
	}
	if equal32(a.Params(), c.Params()) {
		t.Error("different seeds gave the same parameters")
	}
}

func equal32(a, b []float32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestFingerprint(t *testing.T) {
	mlp1, _ := NewMLP(1)
	mlp2, _ := NewMLP(2)
	cnn, _ := NewCNN(1)
	wider, _ := NewSequential(Shape{784}, DenseSpec(257, HeNormal), ReLUSpec(), DenseSpec(128, HeNormal), ReLUSpec(), DenseSpec(10, XavierUniform))
	cases := []struct {
		name string
		a, b *Model
		same bool
	}{
		{"same-arch-different-seed", mlp1, mlp2, true},
		{"mlp-vs-cnn", mlp1, cnn, false},
		{"one-unit-wider", mlp1, wider, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := c.a.Fingerprint() == c.b.Fingerprint(); got != c.same {
				t.Errorf("fingerprints equal = %v, want %v", got, c.same)
			}
		})
	}
}

// TestDropoutMaskIsKeyed: a sample's mask depends on its key only, not on
// its position in the batch, and about p of the units are dropped.
func TestDropoutMaskIsKeyed(t *testing.T) {
	l, _ := DropoutSpec(0.25)(Shape{1000})
	d := l.(*Dropout)
	x := make([]float32, 2000)
	for i := range x {
		x[i] = 1
	}
	d.SetSampleKeys([]uint64{10, 20})
	a := append([]float32(nil), d.Forward(x, 2, true)...)
	d.SetSampleKeys([]uint64{20, 10})
	b := d.Forward(x, 2, true)
	if !equal32(a[:1000], b[1000:]) || !equal32(a[1000:], b[:1000]) {
		t.Fatal("mask depends on the position in the batch")
	}
	if equal32(a[:1000], a[1000:]) {
		t.Fatal("two keys gave the same mask")
	}
	zeros := 0
	for _, v := range a {
		if v == 0 {
			zeros++
		} else if v != 1/(1-0.25) {
			t.Fatalf("kept unit scaled to %v", v)
		}
	}
	if zeros < 400 || zeros > 600 { // 2000·0.25 = 500, sd ≈ 19
		t.Errorf("%d of 2000 dropped, want about 500", zeros)
	}
}

// largeAllocs counts heap allocations of objects bigger than 2 KiB so far.
func largeAllocs() uint64 {
	s := []metrics.Sample{{Name: "/gc/heap/allocs-by-size:bytes"}}
	metrics.Read(s)
	h := s[0].Value.Float64Histogram()
	var n uint64
	for i, c := range h.Counts {
		if h.Buckets[i] >= 2048 {
			n += c
		}
	}
	return n
}

// TestTrainBatchReusesBuffers: after a warm-up step at the largest batch
// size, a training step allocates no buffers. gonum's parallel Sgemm itself
// allocates a few small objects per call (a goroutine closure per block), so
// the check counts only allocations above 2 KiB: at n = 64 every activation,
// gradient and im2col buffer of these models is larger than that.
func TestTrainBatchReusesBuffers(t *testing.T) {
	cases := []struct {
		name  string
		build func(uint64) (*Model, error)
	}{{"mlp", NewMLP}, {"cnn", NewCNN}}
	const n, steps = 64, 5
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m, _ := c.build(1)
			rng := rand.New(rand.NewPCG(1, 1))
			x := randVec(rng, n*m.InShape().Size())
			labels := make([]uint8, n)
			m.SetSampleKeys(make([]uint64, n))
			m.TrainBatch(x, labels, n, 1.0/n)
			before := largeAllocs()
			for i := 0; i < steps; i++ {
				if _, _, err := m.TrainBatch(x, labels, n-i, 1.0/n); err != nil {
					t.Fatal(err)
				}
			}
			if got := largeAllocs() - before; got != 0 {
				t.Errorf("%d allocations above 2 KiB in %d steps after warm-up", got, steps)
			}
		})
	}
}

func TestBadSpecs(t *testing.T) {
	cases := []struct {
		name string
		in   Shape
		spec Spec
	}{
		{"dense-zero-out", Shape{3}, DenseSpec(0, HeNormal)},
		{"conv-flat-input", Shape{9}, Conv2DSpec(1, 3, 1, 0, HeNormal)},
		{"conv-kernel-too-big", Shape{1, 3, 3}, Conv2DSpec(1, 5, 1, 0, HeNormal)},
		{"pool-too-big", Shape{1, 2, 2}, MaxPool2DSpec(3, 1)},
		{"dropout-p-1", Shape{3}, DropoutSpec(1)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if _, err := NewSequential(c.in, c.spec); err == nil {
				t.Error("accepted")
			}
		})
	}
}
