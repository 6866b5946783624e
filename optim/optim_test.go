package optim

import (
	"errors"
	"math"
	"testing"
)

// Exact expected values: inputs are small integers and powers of two, so
// every intermediate float32 is exact.
func TestSGDExact(t *testing.T) {
	cases := []struct {
		name string
		opt  *SGD
		want [][]float32 // parameters after each step
	}{
		// p=10, g=2, lr=0.5: p ← p − 1
		{"plain", &SGD{}, [][]float32{{9}, {8}}},
		// λ=0.25: g = 2 + 0.25·10 = 4.5 → 7.75; then 2 + 0.25·7.75 = 3.9375 → 5.78125
		{"weight-decay", &SGD{WeightDecay: 0.25}, [][]float32{{7.75}, {5.78125}}},
		// v=2 → p=9; v=0.5·2+2=3 → p=7.5
		{"momentum", &SGD{Momentum: 0.5}, [][]float32{{9}, {7.5}}},
		// v=2, step g+μv = 3 → 8.5; v=3, step 2+1.5 = 3.5 → 6.75
		{"nesterov", &SGD{Momentum: 0.5, Nesterov: true}, [][]float32{{8.5}, {6.75}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := []float32{10}
			for i, w := range c.want {
				if err := c.opt.Update(p, []float32{2}, 0.5); err != nil {
					t.Fatal(err)
				}
				if p[0] != w[0] {
					t.Fatalf("step %d: p = %v, want %v", i+1, p[0], w[0])
				}
			}
		})
	}
}

// refAdam is Adam/AdamW in float64 as PyTorch writes it.
func refAdam(p, g []float64, lr, wd float64, decoupled bool, steps int) []float64 {
	m, v := make([]float64, len(p)), make([]float64, len(p))
	p = append([]float64(nil), p...)
	for t := 1; t <= steps; t++ {
		for i := range p {
			gi := g[i]
			if decoupled {
				p[i] *= 1 - lr*wd
			} else {
				gi += wd * p[i]
			}
			m[i] = 0.9*m[i] + 0.1*gi
			v[i] = 0.999*v[i] + 0.001*gi*gi
			mh := m[i] / (1 - math.Pow(0.9, float64(t)))
			vh := v[i] / (1 - math.Pow(0.999, float64(t)))
			p[i] -= lr * mh / (math.Sqrt(vh) + 1e-8)
		}
	}
	return p
}

func TestAdamMatchesReference(t *testing.T) {
	cases := []struct {
		name string
		opt  *Adam
		wd   float64
	}{
		{"adam", &Adam{}, 0},
		{"adam-l2", &Adam{WeightDecay: 0.1}, 0.1},
		{"adamw", NewAdamW(0.1), 0.1},
	}
	p0 := []float64{1, -2, 0.5, 3}
	g := []float64{0.3, -0.1, 2, 0}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := []float32{1, -2, 0.5, 3}
			g32 := []float32{0.3, -0.1, 2, 0}
			for i := 0; i < 5; i++ {
				if err := c.opt.Update(p, g32, 0.01); err != nil {
					t.Fatal(err)
				}
			}
			want := refAdam(p0, g, 0.01, c.wd, c.opt.Decoupled, 5)
			for i := range p {
				if math.Abs(float64(p[i])-want[i]) > 1e-6 {
					t.Errorf("p[%d] = %v, want %v", i, p[i], want[i])
				}
			}
		})
	}
}

// TestConverges: every optimizer minimises Σ (p − target)² from zero.
func TestConverges(t *testing.T) {
	cases := []struct {
		name string
		opt  Optimizer
		lr   float32
	}{
		{"sgd", &SGD{}, 0.1},
		{"momentum", &SGD{Momentum: 0.9}, 0.05},
		{"nesterov", &SGD{Momentum: 0.9, Nesterov: true}, 0.05},
		{"adam", &Adam{}, 0.05},
		{"adamw", NewAdamW(1e-4), 0.05},
	}
	target := []float32{3, -1, 0.5}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p, g := make([]float32, 3), make([]float32, 3)
			for step := 0; step < 2000; step++ {
				for i := range p {
					g[i] = 2 * (p[i] - target[i])
				}
				if err := c.opt.Update(p, g, c.lr); err != nil {
					t.Fatal(err)
				}
			}
			for i := range p {
				if math.Abs(float64(p[i]-target[i])) > 1e-2 {
					t.Errorf("p = %v, want %v", p, target)
					break
				}
			}
		})
	}
}

// TestStateRoundTrip: an optimizer restored from another's state continues
// bitwise identically.
func TestStateRoundTrip(t *testing.T) {
	cases := []struct {
		name string
		mk   func() Optimizer
	}{
		{"sgd", func() Optimizer { return &SGD{} }},
		{"nesterov", func() Optimizer { return &SGD{Momentum: 0.9, Nesterov: true} }},
		{"adam", func() Optimizer { return &Adam{} }},
		{"adamw", func() Optimizer { return NewAdamW(0.01) }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			a, b := c.mk(), c.mk()
			pa := []float32{1, 2, 3, 4}
			g := []float32{0.5, -0.25, 1, 2}
			for i := 0; i < 3; i++ {
				a.Update(pa, g, 0.1)
			}
			blob, err := a.MarshalBinary()
			if err != nil {
				t.Fatal(err)
			}
			if err := b.UnmarshalBinary(blob); err != nil {
				t.Fatal(err)
			}
			pb := append([]float32(nil), pa...)
			for i := 0; i < 3; i++ {
				a.Update(pa, g, 0.1)
				b.Update(pb, g, 0.1)
			}
			for i := range pa {
				if pa[i] != pb[i] {
					t.Fatalf("restored optimizer diverged: %v vs %v", pa, pb)
				}
			}
		})
	}
}

func TestStateRejects(t *testing.T) {
	adam := &Adam{}
	adam.Update([]float32{1, 2}, []float32{1, 1}, 0.1)
	good, _ := adam.MarshalBinary()
	cases := []struct {
		name string
		into Optimizer
		blob []byte
	}{
		{"other-optimizer", &SGD{Momentum: 0.9}, good},
		{"truncated", &Adam{}, good[:len(good)-1]},
		{"trailing", &Adam{}, append(append([]byte(nil), good...), 0)},
		{"bad-magic", &Adam{}, append([]byte("XXXX"), good[4:]...)},
		{"empty", &Adam{}, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if err := c.into.UnmarshalBinary(c.blob); !errors.Is(err, ErrState) {
				t.Fatalf("err = %v, want ErrState", err)
			}
		})
	}
}

func TestUpdateLengthMismatch(t *testing.T) {
	o := &Adam{}
	if err := o.Update(make([]float32, 3), make([]float32, 3), 0.1); err != nil {
		t.Fatal(err)
	}
	if err := o.Update(make([]float32, 4), make([]float32, 4), 0.1); !errors.Is(err, ErrState) {
		t.Fatalf("state for 3 parameters used on 4: err = %v", err)
	}
	if err := (&SGD{}).Update(make([]float32, 2), make([]float32, 3), 0.1); err == nil {
		t.Fatal("length mismatch accepted")
	}
}

func FuzzDecodeState(f *testing.F) {
	a := &Adam{}
	a.Update([]float32{1, 2, 3}, []float32{1, 1, 1}, 0.1)
	blob, _ := a.MarshalBinary()
	f.Add(blob)
	s := &SGD{Momentum: 0.5}
	s.Update([]float32{1}, []float32{1}, 0.1)
	blob, _ = s.MarshalBinary()
	f.Add(blob)
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, o := range []Optimizer{&Adam{}, NewAdamW(0), &SGD{}, &SGD{Momentum: 0.9}} {
			if err := o.UnmarshalBinary(b); err == nil {
				again, _ := o.MarshalBinary()
				if string(again) != string(b) {
					t.Fatalf("%s: decode/encode not identity", o.Name())
				}
			}
		}
	})
}
