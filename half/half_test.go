package half

import (
	"math"
	"testing"
)

func TestBFloat16Table(t *testing.T) {
	cases := []struct {
		name string
		in   uint32 // float32 bits
		want uint16
	}{
		{"one", 0x3f800000, 0x3f80},
		{"minus zero", 0x80000000, 0x8000},
		{"just below half-way rounds down", 0x3f807fff, 0x3f80},
		{"half-way to odd rounds to even (down)", 0x3f808000, 0x3f80},
		{"half-way from odd rounds to even (up)", 0x3f818000, 0x3f82},
		{"just above half-way rounds up", 0x3f808001, 0x3f81},
		{"one third", 0x3eaaaaab, 0x3eab},
		{"carry into the exponent", 0x3fffffff, 0x4000},
		{"largest below the bfloat16 maximum's half-way", 0x7f7f7fff, 0x7f7f},
		{"largest float32 overflows to +Inf", 0x7f7fffff, 0x7f80},
		{"-largest float32 overflows to -Inf", 0xff7fffff, 0xff80},
		{"+Inf", 0x7f800000, 0x7f80},
		{"-Inf", 0xff800000, 0xff80},
		{"quiet NaN", 0x7fc00000, 0x7fc0},
		{"signalling NaN made quiet", 0x7f800001, 0x7fc0},
		{"negative NaN keeps sign and payload", 0xffa00000, 0xffe0},
		{"tiny subnormal rounds to zero", 0x00000001, 0x0000},
		{"subnormal half-way to even zero", 0x00008000, 0x0000},
		{"subnormal half-way from odd rounds up", 0x00018000, 0x0002},
		{"smallest bfloat16 subnormal", 0x00010000, 0x0001},
		{"largest subnormal rounds to smallest normal", 0x807fffff, 0x8080},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := BFloat16(math.Float32frombits(c.in)); got != c.want {
				t.Fatalf("BFloat16(%#08x) = %#04x, want %#04x", c.in, got, c.want)
			}
		})
	}
}

func TestFloat16Table(t *testing.T) {
	cases := []struct {
		name string
		in   float32
		want uint16
	}{
		{"one", 1, 0x3c00},
		{"minus two", -2, 0xc000},
		{"minus zero", float32(math.Copysign(0, -1)), 0x8000},
		{"a tenth", 0.1, 0x2e66},
		{"one third", 1.0 / 3, 0x3555},
		{"half-way to odd rounds to even (down)", 1 + 0x1p-11, 0x3c00},
		{"half-way from odd rounds to even (up)", 1 + 3*0x1p-11, 0x3c02},
		{"just above half-way rounds up", math.Float32frombits(0x3f801001), 0x3c01},
		{"largest finite", 65504, 0x7bff},
		{"below the overflow half-way", 65519.99, 0x7bff},
		{"overflow half-way rounds to even = +Inf", 65520, 0x7c00},
		{"2^16 overflows", 65536, 0x7c00},
		{"large overflows to -Inf", -1e10, 0xfc00},
		{"+Inf", float32(math.Inf(1)), 0x7c00},
		{"-Inf", float32(math.Inf(-1)), 0xfc00},
		{"quiet NaN", math.Float32frombits(0x7fc00000), 0x7e00},
		{"signalling NaN made quiet", math.Float32frombits(0x7f800001), 0x7e00},
		{"NaN keeps top payload bits", math.Float32frombits(0xffa02000), 0xff01},
		{"smallest normal", 0x1p-14, 0x0400},
		{"largest subnormal", 1023 * 0x1p-24, 0x03ff},
		{"half-way to smallest normal rounds up to even", 0x1p-14 - 0x1p-25, 0x0400},
		{"smallest subnormal", 0x1p-24, 0x0001},
		{"half the smallest subnormal rounds to even zero", 0x1p-25, 0x0000},
		{"just above half the smallest subnormal", math.Float32frombits(0x33000001), 0x0001},
		{"1.5 subnormal units round to even 2", 3 * 0x1p-25, 0x0002},
		{"2.5 subnormal units round to even 2", 5 * 0x1p-25, 0x0002},
		{"negative subnormal", -3 * 0x1p-24, 0x8003},
		{"float32 subnormal underflows", math.Float32frombits(0x00000001), 0x0000},
		{"below a quarter unit underflows", 0x1p-26, 0x0000},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := Float16(c.in); got != c.want {
				t.Fatalf("Float16(%g = %#08x) = %#04x, want %#04x", c.in, math.Float32bits(c.in), got, c.want)
			}
		})
	}
}

// refFloat16 is the value of binary16 bits by the format's definition,
// computed independently of FromFloat16.
func refFloat16(h uint16) float64 {
	s := 1.0
	if h&0x8000 != 0 {
		s = -1
	}
	e, m := int(h>>10)&0x1f, float64(h&0x3ff)
	switch e {
	case 0x1f:
		if m != 0 {
			return math.NaN()
		}
		return math.Inf(int(s))
	case 0:
		return s * math.Ldexp(m, -24)
	}
	return s * math.Ldexp(1+m/1024, e-15)
}

func refBFloat16(h uint16) float64 {
	s := 1.0
	if h&0x8000 != 0 {
		s = -1
	}
	e, m := int(h>>7)&0xff, float64(h&0x7f)
	switch e {
	case 0xff:
		if m != 0 {
			return math.NaN()
		}
		return math.Inf(int(s))
	case 0:
		return s * math.Ldexp(m, -133)
	}
	return s * math.Ldexp(1+m/128, e-127)
}

// TestWidenExhaustive: every one of the 65,536 codes of both formats widens
// to its defined value, and narrowing it back gives the same code (NaNs
// come back quiet).
func TestWidenExhaustive(t *testing.T) {
	for c := 0; c < 1<<16; c++ {
		h := uint16(c)
		if got, want := float64(FromFloat16(h)), refFloat16(h); !same(got, want) {
			t.Fatalf("FromFloat16(%#04x) = %g, want %g", h, got, want)
		}
		if got, want := float64(FromBFloat16(h)), refBFloat16(h); !same(got, want) {
			t.Fatalf("FromBFloat16(%#04x) = %g, want %g", h, got, want)
		}
		want16, wantB := h, h
		if math.IsNaN(refFloat16(h)) {
			want16 |= 0x0200
		}
		if math.IsNaN(refBFloat16(h)) {
			wantB |= 0x0040
		}
		if got := Float16(FromFloat16(h)); got != want16 {
			t.Fatalf("Float16(FromFloat16(%#04x)) = %#04x, want %#04x", h, got, want16)
		}
		if got := BFloat16(FromBFloat16(h)); got != wantB {
			t.Fatalf("BFloat16(FromBFloat16(%#04x)) = %#04x, want %#04x", h, got, wantB)
		}
	}
}

func same(a, b float64) bool {
	return a == b && math.Signbit(a) == math.Signbit(b) || math.IsNaN(a) && math.IsNaN(b)
}

// nearest finds the code nearest to x among the non-negative finite codes
// 0..maxCode of a format (decoded by ref, increasing), ties to the even
// code; beyond maxCode's value plus half its spacing it returns infCode, as
// IEEE 754 rounding to nearest does.
func nearest(x float64, maxCode, infCode uint16, ref func(uint16) float64) uint16 {
	lo, hi := 0, int(maxCode) // largest k with ref(k) ≤ x
	for lo < hi {
		mid := (lo + hi + 1) / 2
		if ref(uint16(mid)) <= x {
			lo = mid
		} else {
			hi = mid - 1
		}
	}
	k := uint16(lo)
	if k == maxCode {
		top := ref(maxCode) + (ref(maxCode)-ref(maxCode-1))/2
		if x >= top {
			return infCode
		}
		return k
	}
	dl, dh := x-ref(k), ref(k+1)-x
	if dh < dl || dh == dl && k&1 == 1 {
		return k + 1
	}
	return k
}

// checkNarrow compares both narrowings of f with the reference rounding.
func checkNarrow(t *testing.T, f float32) {
	t.Helper()
	x := float64(f)
	if math.IsNaN(x) {
		if h := Float16(f); h&0x7c00 != 0x7c00 || h&0x03ff == 0 || h&0x0200 == 0 {
			t.Fatalf("Float16(NaN %#08x) = %#04x, not a quiet NaN", math.Float32bits(f), h)
		}
		if h := BFloat16(f); h&0x7f80 != 0x7f80 || h&0x0040 == 0 {
			t.Fatalf("BFloat16(NaN %#08x) = %#04x, not a quiet NaN", math.Float32bits(f), h)
		}
		return
	}
	var sign uint16
	if math.Signbit(x) {
		sign = 0x8000
	}
	a := math.Abs(x)
	want16 := sign | nearest(a, 0x7bff, 0x7c00, refFloat16)
	wantB := sign | nearest(a, 0x7f7f, 0x7f80, refBFloat16)
	if math.IsInf(a, 0) {
		want16, wantB = sign|0x7c00, sign|0x7f80
	}
	if got := Float16(f); got != want16 {
		t.Fatalf("Float16(%g = %#08x) = %#04x, want %#04x", f, math.Float32bits(f), got, want16)
	}
	if got := BFloat16(f); got != wantB {
		t.Fatalf("BFloat16(%g = %#08x) = %#04x, want %#04x", f, math.Float32bits(f), got, wantB)
	}
}

// TestNarrowSweep checks about a million float32 bit patterns spread over
// every exponent, plus every half-way point between consecutive codes of
// both formats, against the reference rounding.
func TestNarrowSweep(t *testing.T) {
	for b := uint64(0); b < 1<<32; b += 4093 {
		checkNarrow(t, math.Float32frombits(uint32(b)))
	}
	for c := 0; c < 0x7c00; c++ {
		mid := (refFloat16(uint16(c)) + refFloat16(uint16(c+1))) / 2
		for _, x := range []float64{mid, -mid} {
			f := float32(x) // exact: a binary16 half-way point has ≤ 12 bits
			checkNarrow(t, f)
			checkNarrow(t, math.Nextafter32(f, 0))
			checkNarrow(t, math.Nextafter32(f, float32(math.Inf(int(math.Copysign(1, x))))))
		}
	}
	for c := 0; c < 0x7f80; c++ {
		b := uint32(c)<<16 | 0x8000 // the half-way point to the next code
		for _, f := range []uint32{b, b - 1, b + 1, b | 0x80000000} {
			checkNarrow(t, math.Float32frombits(f))
		}
	}
}

// FuzzNarrow: any float32 narrows to the nearest code of either format
// (ties to even), and the widened result narrows back to the same code.
func FuzzNarrow(f *testing.F) {
	for _, s := range []uint32{0, 0x3f800000, 0x3f808000, 0x477fefff, 0x477ff000, 0x7f7fffff, 0x7f800001, 0x33000000, 0x00018000, 0x387fe000} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, bits uint32) {
		v := math.Float32frombits(bits)
		checkNarrow(t, v)
		if h := Float16(v); Float16(FromFloat16(h)) != h {
			t.Fatalf("binary16 round trip of %#04x from %#08x drifts", h, bits)
		}
		if h := BFloat16(v); BFloat16(FromBFloat16(h)) != h {
			t.Fatalf("bfloat16 round trip of %#04x from %#08x drifts", h, bits)
		}
	})
}

// TestKernels: the bulk kernels agree with the scalar conversions and use
// little-endian order.
func TestKernels(t *testing.T) {
	src := []float32{1, -2, 0.1, 65520, float32(math.Inf(-1)), 3 * 0x1p-25, 1.0 / 3}
	cases := []struct {
		name   string
		enc    func([]byte, []float32)
		dec    func([]float32, []byte)
		round  func([]float32)
		scalar func(float32) uint16
		widen  func(uint16) float32
	}{
		{"bf16", EncodeBFloat16, DecodeBFloat16, RoundBFloat16, BFloat16, FromBFloat16},
		{"fp16", EncodeFloat16, DecodeFloat16, RoundFloat16, Float16, FromFloat16},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b := make([]byte, 2*len(src)+3) // longer than needed: only the prefix is written
			c.enc(b, src)
			dst := make([]float32, len(src))
			c.dec(dst, b)
			r := append([]float32(nil), src...)
			c.round(r)
			for i, v := range src {
				h := c.scalar(v)
				if b[2*i] != byte(h) || b[2*i+1] != byte(h>>8) {
					t.Fatalf("element %d encoded as %#02x %#02x, want %#04x little-endian", i, b[2*i], b[2*i+1], h)
				}
				if math.Float32bits(dst[i]) != math.Float32bits(c.widen(h)) || math.Float32bits(r[i]) != math.Float32bits(dst[i]) {
					t.Fatalf("element %d: decoded %v, rounded %v, want %v", i, dst[i], r[i], c.widen(h))
				}
			}
			if b[len(b)-1] != 0 {
				t.Fatal("encoder wrote past 2·len(src)")
			}
		})
	}
}
