package ring

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

func TestKernels(t *testing.T) {
	cases := []struct {
		name string
		f    func(dst, src []float32)
		want []float32
	}{
		{"sum", Sum, []float32{5, 1, 4, 0, 10}},
		{"max", Max, []float32{4, 2, 3, 0, 5}},
		{"min", Min, []float32{1, -1, 1, 0, 5}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dst := []float32{1, 2, 3, 0, 5}
			tc.f(dst, []float32{4, -1, 1, 0, 5, 99}) // src may be longer
			for i := range dst {
				if dst[i] != tc.want[i] {
					t.Fatalf("got %v, want %v", dst, tc.want)
				}
			}
		})
	}
	d := []float32{3, 6}
	Div(d, 3)
	if d[0] != 1 || d[1] != 2 {
		t.Fatalf("Div: %v", d)
	}
}

// BenchmarkKernel compares the reduction kernels with a plain copy of the
// same bytes (SetBytes counts the destination once, as copy's does).
func BenchmarkKernel(b *testing.B) {
	for _, n := range []int{64 << 10, 4 << 20} { // floats: 256 KiB chunk, 16 MiB buffer
		dst := make([]float32, n)
		src := make([]float32, n)
		kernels := []struct {
			name string
			f    func()
		}{
			{"copy", func() { copy(dst, src) }},
			{"sum", func() { Sum(dst, src) }},
			{"max", func() { Max(dst, src) }},
			{"div", func() { Div(dst, 3) }},
		}
		for _, k := range kernels {
			b.Run(fmt.Sprintf("%s/%dKiB", k.name, 4*n>>10), func(b *testing.B) {
				b.SetBytes(int64(4 * n))
				for b.Loop() {
					k.f()
				}
			})
		}
	}
}

// TestDivExact: Div gives the bits of a plain float32 division for every
// kind of input, whether it multiplies (powers of two) or divides.
func TestDivExact(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	x := make([]float32, 1<<14)
	for i := range x {
		x[i] = math.Float32frombits(r.Uint32()) // NaN, Inf, subnormals, everything
	}
	x[0], x[1], x[2] = 0x1p-149, -0x1p-126, float32(math.Inf(1))
	for _, f := range []float32{1, 2, 4, 64, 0.5, 0x1p-100, 0x1p126, 0x1p127, 3, 6, 7, -2, 0x1p-140} {
		t.Run(fmt.Sprint(f), func(t *testing.T) {
			got := slices.Clone(x)
			Div(got, f)
			for i, v := range x {
				want := v / f
				if math.Float32bits(got[i]) != math.Float32bits(want) && !(math.IsNaN(float64(want)) && math.IsNaN(float64(got[i]))) {
					t.Fatalf("%#08x / %g = %#08x, want %#08x", math.Float32bits(v), f, math.Float32bits(got[i]), math.Float32bits(want))
				}
			}
		})
	}
}
