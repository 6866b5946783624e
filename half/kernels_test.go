package half

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
	"unsafe"
)

// lowPatterns are the low 16 bits combined with every high half in
// TestNarrowMatchesReference: every boundary of bfloat16's rounding (bit
// 15) and of binary16's normal rounding (bit 12), zero, all ones and a few
// arbitrary patterns. Subnormal binary16 results round at higher bits,
// which the high half enumerates.
var lowPatterns = []uint32{0x0000, 0x0001, 0x0fff, 0x1000, 0x1001, 0x1fff, 0x2000, 0x3000, 0x5a5a,
	0x7fff, 0x8000, 0x8001, 0x9000, 0xc001, 0xefff, 0xffff}

// TestNarrowMatchesReference: the branch-free narrowings give the
// reference's bits for all 65,536 high halves of a float32 (every sign,
// exponent and top fraction) with each low pattern, and for a million
// random float32 bit patterns.
func TestNarrowMatchesReference(t *testing.T) {
	check := func(b uint32) {
		f := math.Float32frombits(b)
		for _, ft := range formats {
			if got, want := ft.narrow(f), ft.refNarrow(f); got != want {
				t.Fatalf("%s: narrow(%#08x) = %#04x, reference %#04x", ft.name, b, got, want)
			}
		}
	}
	for hi := range uint32(1 << 16) {
		for _, lo := range lowPatterns {
			check(hi<<16 | lo)
		}
	}
	r := rand.New(rand.NewPCG(1, 2))
	for range 1 << 20 {
		check(r.Uint32())
	}
}

// TestWidenMatchesReference: every one of the 65,536 codes widens to the
// reference's bits, in both formats, by the scalar and by the bulk decoder
// (signalling NaNs included, which a vector conversion would quiet).
func TestWidenMatchesReference(t *testing.T) {
	codes := make([]byte, 2<<16)
	for c := range 1 << 16 {
		codes[2*c], codes[2*c+1] = byte(c), byte(c>>8)
	}
	for _, ft := range formats {
		dec := make([]float32, 1<<16)
		ft.decode(dec, codes)
		for c := range 1 << 16 {
			h := uint16(c)
			want := math.Float32bits(ft.refWiden(h))
			if got := math.Float32bits(ft.widen(h)); got != want {
				t.Fatalf("%s: widen(%#04x) = %#08x, reference %#08x", ft.name, h, got, want)
			}
			if got := math.Float32bits(dec[c]); got != want {
				t.Fatalf("%s: decode(%#04x) = %#08x, reference %#08x", ft.name, h, got, want)
			}
		}
	}
}

// inputClasses are float32 inputs of every kind the kernels must treat
// alike: named specials, finite edge values, then random bits,
// gradient-like values, values in and below binary16's subnormal range and
// values near its overflow.
func inputClasses() []struct {
	name string
	x    []float32
} {
	r := rand.New(rand.NewPCG(3, 4))
	specials := []uint32{0, 0x80000000, 0x7f800000, 0xff800000, 0x7fc00000, 0xffc00001, 0x7f800001, 0xff9fffff,
		0x00000001, 0x807fffff, 0x33000000, 0x33000001, 0x387fe000, 0x387ff000, 0x38800000, 0x477fe000, 0x477fefff,
		0x477ff000, 0x47800000, 0x7f7f7fff, 0x7f7f8000, 0x7f7fffff, 0x3f808000, 0x3f818000, 0x3f801000, 0x3f803000}
	// Finite values at every rounding and range boundary, four at a time
	// below 2^16 (so that both formats take their short path), then four
	// just at and above 2^16 (binary16's full path must take them), then
	// three that binary16 overflows on and bfloat16 rounds (to +Inf for the
	// last two).
	edges := []uint32{0, 0x80000000, 0x00000001, 0x807fffff, 0x33000000, 0x33000001, 0x387fe000, 0x387ff000,
		0x38800000, 0x477fe000, 0x477fefff, 0x477ff000, 0x3f808000, 0x3f818000, 0x3f801000, 0xbf803000,
		0x47800000, 0x47800001, 0x47801fff, 0xc7800fff,
		0x47900000, 0x7f7f7fff, 0x7f7f8000}
	mk := func(n int, f func() float32) []float32 {
		x := make([]float32, n)
		for i := range x {
			x[i] = f()
		}
		return x
	}
	out := []struct {
		name string
		x    []float32
	}{
		{"specials", mk(len(specials), func() float32 { return 0 })},
		{"edges", mk(len(edges), func() float32 { return 0 })},
		{"random bits", mk(4099, func() float32 { return math.Float32frombits(r.Uint32()) })},
		{"gradients", mk(4098, func() float32 { return float32(r.NormFloat64() * 1e-2) })},
		{"tiny", mk(4097, func() float32 { return float32(r.NormFloat64() * 1e-6) })},
		{"large", mk(4096, func() float32 { return float32(r.NormFloat64() * 6e4) })},
	}
	for i, b := range specials {
		out[0].x[i] = math.Float32frombits(b)
	}
	for i, b := range edges {
		out[1].x[i] = math.Float32frombits(b)
	}
	return out
}

// TestKernelsMatchScalar: the bulk kernels give, for every input class and
// for every length up to 9 (the four-element loop and its tails), around
// 16 (the eight-element vector loop and its tails) and thousands, exactly the reference scalar conversions, little-endian, and
// never write past their length.
func TestKernelsMatchScalar(t *testing.T) {
	for _, ft := range formats {
		for _, class := range inputClasses() {
			for _, n := range []int{0, 1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, len(class.x)} {
				t.Run(fmt.Sprintf("%s/%s/len=%d", ft.name, class.name, n), func(t *testing.T) {
					n = min(n, len(class.x))
					src := class.x[:n]
					b := make([]byte, 2*n+2)
					ft.encode(b, src)
					dec := make([]float32, n+1)
					ft.decode(dec[:n], b)
					rnd := append([]float32(nil), src...)
					ft.round(rnd)
					for i, v := range src {
						h := ft.refNarrow(v)
						if got := uint16(b[2*i]) | uint16(b[2*i+1])<<8; got != h {
							t.Fatalf("encode[%d] of %#08x = %#04x, want %#04x", i, math.Float32bits(v), got, h)
						}
						w := math.Float32bits(ft.refWiden(h))
						if math.Float32bits(dec[i]) != w || math.Float32bits(rnd[i]) != w {
							t.Fatalf("element %d (%#08x): decoded %#08x, rounded %#08x, want %#08x", i,
								math.Float32bits(v), math.Float32bits(dec[i]), math.Float32bits(rnd[i]), w)
						}
					}
					if b[2*n] != 0 || b[2*n+1] != 0 || dec[n] != 0 {
						t.Fatal("a kernel wrote past its length")
					}
				})
			}
		}
	}
}

// TestEncodeExactBFloat16: for values that are bfloat16 (every decoded
// code, signalling NaNs included, and every rounded input of each class)
// the exact encoder gives the code they came from (the rounding encoder's
// code for rounded values) at every length around the vector loop's eight
// and its tails, and never writes past its length.
func TestEncodeExactBFloat16(t *testing.T) {
	codes := make([]byte, 2<<16)
	for c := range 1 << 16 {
		codes[2*c], codes[2*c+1] = byte(c), byte(c>>8)
	}
	decoded := make([]float32, 1<<16)
	DecodeBFloat16(decoded, codes)
	cases := []struct {
		name string
		x    []float32
		want func(i int) uint16
	}{
		{"every code decoded", decoded, func(i int) uint16 { return uint16(i) }},
	}
	for _, class := range inputClasses() {
		x := append([]float32(nil), class.x...)
		RoundBFloat16(x)
		cases = append(cases, struct {
			name string
			x    []float32
			want func(i int) uint16
		}{class.name + " rounded", x, func(i int) uint16 { return refNarrowBF16(class.x[i]) }})
	}
	for _, ft := range formats[:2] { // bf16 and bf16/go
		for _, c := range cases {
			for _, n := range []int{0, 1, 7, 8, 9, 15, 16, 17, len(c.x)} {
				t.Run(fmt.Sprintf("%s/%s/len=%d", ft.name, c.name, n), func(t *testing.T) {
					n = min(n, len(c.x))
					b := make([]byte, 2*n+2)
					ft.encodeExact(b, c.x[:n])
					enc := make([]byte, 2*n)
					EncodeBFloat16(enc, c.x[:n])
					for i, v := range c.x[:n] {
						got := uint16(b[2*i]) | uint16(b[2*i+1])<<8
						if want := c.want(i); got != want {
							t.Fatalf("element %d (%#08x) = %#04x, want %#04x", i, math.Float32bits(v), got, want)
						}
						if r := uint16(enc[2*i]) | uint16(enc[2*i+1])<<8; got != r && !(got&0x7fff > 0x7f80 && got&0x40 == 0) {
							t.Fatalf("element %d (%#08x) = %#04x, EncodeBFloat16 %#04x", i, math.Float32bits(v), got, r)
						}
					}
					if b[2*n] != 0 || b[2*n+1] != 0 {
						t.Fatal("wrote past its length")
					}
				})
			}
		}
	}
}

// TestExpandBFloat16: codes in the upper half of a buffer widen in place
// to what DecodeBFloat16 gives from a separate copy, for every one of the
// 65,536 codes and at lengths around the vector loop's eight, without
// touching the memory past the buffer.
func TestExpandBFloat16(t *testing.T) {
	for _, n := range []int{0, 1, 2, 3, 7, 8, 9, 15, 16, 17, 31, 33, 1 << 16} {
		t.Run(fmt.Sprintf("len=%d", n), func(t *testing.T) {
			codes := make([]byte, 2*n)
			for i := range n {
				c := uint16(i*40503 + 7) // every code once at 65,536
				codes[2*i], codes[2*i+1] = byte(c), byte(c>>8)
			}
			want := make([]float32, n)
			DecodeBFloat16(want, codes)
			buf := make([]float32, n+1)
			buf[n] = 42
			copy(unsafe.Slice((*byte)(unsafe.Pointer(&buf[0])), 4*n+4)[2*n:4*n], codes)
			ExpandBFloat16(buf[:n])
			for i := range n {
				if math.Float32bits(buf[i]) != math.Float32bits(want[i]) {
					t.Fatalf("element %d = %#08x, want %#08x", i, math.Float32bits(buf[i]), math.Float32bits(want[i]))
				}
			}
			if buf[n] != 42 {
				t.Fatal("wrote past the buffer")
			}
		})
	}
}

// refAddRound is the last hop done step by step with the reference scalars.
func refAddRound(ft format, acc float32, code uint16, div float32) (uint16, uint32) {
	h := ft.refNarrow((acc + ft.refWiden(code)) / div)
	return h, math.Float32bits(ft.refWiden(h))
}

// sameCode: got is want, or both are NaN. When both operands of an
// addition are NaN, which payload the result carries depends on the
// operand order the compiler picked (IEEE 754 leaves it open), so a NaN
// result is checked to be a NaN, not for its payload.
func sameCode(ft format, got, want uint16) bool {
	return got == want || math.IsNaN(float64(ft.refWiden(got))) && math.IsNaN(float64(ft.refWiden(want)))
}

// sameHop: a fused hop's code and widened accumulator match the
// reference's (NaN: any NaN, the accumulator its code's widening).
func sameHop(ft format, gotH uint16, gotA uint32, wantH uint16, wantA uint32) bool {
	if gotH == wantH && gotA == wantA {
		return true
	}
	return sameCode(ft, gotH, wantH) && gotA == math.Float32bits(ft.refWiden(gotH))
}

// TestFusedMatchSteps: a fused hop gives the bits of decode, add, (divide)
// and encode done one after the other with the reference scalars, for
// every one of the 65,536 codes against accumulators of every input class,
// with divisors that take the exact (power-of-two) and the dividing path.
func TestFusedMatchSteps(t *testing.T) {
	codes := make([]byte, 2<<16)
	for c := range 1 << 16 {
		codes[2*c], codes[2*c+1] = byte(c), byte(c>>8)
	}
	for _, ft := range formats {
		for _, class := range inputClasses() {
			acc := make([]float32, 1<<16)
			for i := range acc {
				acc[i] = class.x[i%len(class.x)]
			}
			t.Run(ft.name+"/"+class.name+"/add-encode", func(t *testing.T) {
				w := append([]byte(nil), codes...)
				a := append([]float32(nil), acc...)
				ft.addEncode(w, a)
				for i := range acc {
					want := ft.refNarrow(acc[i] + ft.refWiden(uint16(i)))
					if got := uint16(w[2*i]) | uint16(w[2*i+1])<<8; !sameCode(ft, got, want) {
						t.Fatalf("code %#04x + %#08x: %#04x, want %#04x", i, math.Float32bits(acc[i]), got, want)
					}
					if math.Float32bits(a[i]) != math.Float32bits(acc[i]) {
						t.Fatalf("accumulator %d written", i)
					}
				}
			})
			for _, div := range []float32{1, 2, 4, 0.5, 3, 7, 1 << 20} {
				t.Run(fmt.Sprintf("%s/%s/add-round/div=%g", ft.name, class.name, div), func(t *testing.T) {
					for _, n := range []int{1 << 16, 1<<16 - 3} { // with and without a tail
						w := append([]byte(nil), codes...)
						a := append([]float32(nil), acc...)
						ft.addRound(a[:n], w[:2*n], div)
						for i := range n {
							wantH, wantA := refAddRound(ft, acc[i], uint16(i), div)
							if got := uint16(w[2*i]) | uint16(w[2*i+1])<<8; !sameHop(ft, got, math.Float32bits(a[i]), wantH, wantA) {
								t.Fatalf("code %#04x + %#08x, /%g: %#04x %#08x, want %#04x %#08x", i,
									math.Float32bits(acc[i]), div, got, math.Float32bits(a[i]), wantH, wantA)
							}
						}
					}
				})
			}
		}
	}
}

// TestReciprocal: multiplication replaces division exactly for the
// positive normal powers of two with a normal reciprocal, and for nothing
// else.
func TestReciprocal(t *testing.T) {
	cases := []struct {
		name string
		d    float32
		want float32
		ok   bool
	}{
		{"one", 1, 1, true},
		{"two", 2, 0.5, true},
		{"four peers", 4, 0.25, true},
		{"a half", 0.5, 2, true},
		{"2^126", 0x1p126, 0x1p-126, true},
		{"2^127: reciprocal subnormal", 0x1p127, 0, false},
		{"three", 3, 0, false},
		{"minus two", -2, 0, false},
		{"zero", 0, 0, false},
		{"subnormal power of two", 0x1p-130, 0, false},
		{"+Inf", float32(math.Inf(1)), 0, false},
		{"NaN", float32(math.NaN()), 0, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got, ok := ExactReciprocal(c.d); got != c.want || ok != c.ok {
				t.Fatalf("ExactReciprocal(%g) = %g, %v; want %g, %v", c.d, got, ok, c.want, c.ok)
			}
		})
	}
}

// FuzzAddRound: a fused last hop equals the reference steps for any
// accumulator, code and divisor.
func FuzzAddRound(f *testing.F) {
	f.Add(uint32(0x3f800000), uint16(0x3c00), float32(4))
	f.Add(uint32(0x7f800001), uint16(0x7e01), float32(3))
	f.Add(uint32(0x00000001), uint16(0x0001), float32(2))
	f.Fuzz(func(t *testing.T, accBits uint32, code uint16, div float32) {
		acc := math.Float32frombits(accBits)
		for _, ft := range formats {
			for _, n := range []int{1, 5} {
				a := make([]float32, n)
				w := make([]byte, 2*n)
				for i := range a {
					a[i], w[2*i], w[2*i+1] = acc, byte(code), byte(code>>8)
				}
				ft.addRound(a, w, div)
				wantH, wantA := refAddRound(ft, acc, code, div)
				for i := range a {
					if got := uint16(w[2*i]) | uint16(w[2*i+1])<<8; !sameHop(ft, got, math.Float32bits(a[i]), wantH, wantA) {
						t.Fatalf("%s: %#04x + %#08x, /%g: %#04x %#08x, want %#04x %#08x", ft.name, code, accBits, div,
							got, math.Float32bits(a[i]), wantH, wantA)
					}
				}
			}
		}
	})
}

// BenchmarkKernels times each kernel on a 256 KiB-of-wire chunk (131,072
// elements) of gradient-like values, next to the reference scalars in a
// plain loop ("ref") and, for the fused hops, next to the separate steps
// they replace ("steps": decode into a scratch buffer, add, divide,
// encode, round). SetBytes counts float32 bytes.
func BenchmarkKernels(b *testing.B) {
	const n = 1 << 17
	r := rand.New(rand.NewPCG(5, 6))
	src := make([]float32, n)
	for i := range src {
		src[i] = float32(r.NormFloat64() * 1e-3) // many below binary16's normal range
	}
	acc := make([]float32, n)
	scratch := make([]float32, n)
	for _, ft := range formats {
		wire := make([]byte, 2*n)
		ft.encode(wire, src)
		codes := append([]byte(nil), wire...)
		refEncode := func() {
			for i, v := range src {
				h := ft.refNarrow(v)
				wire[2*i], wire[2*i+1] = byte(h), byte(h>>8)
			}
		}
		refDecode := func() {
			for i := range acc {
				acc[i] = ft.refWiden(uint16(wire[2*i]) | uint16(wire[2*i+1])<<8)
			}
		}
		steps := func(div float32) {
			copy(wire, codes)
			refDecode()
			for i := range scratch {
				scratch[i] = src[i] + acc[i]
				if div != 1 {
					scratch[i] /= div
				}
			}
			for i, v := range scratch {
				h := ft.refNarrow(v)
				wire[2*i], wire[2*i+1] = byte(h), byte(h>>8)
				scratch[i] = ft.refWiden(h)
			}
		}
		for _, k := range []struct {
			name string
			fn   func()
		}{
			{"encode", func() { ft.encode(wire, src) }},
			{"encode/ref", refEncode},
			{"encode-exact", func() { ft.encodeExact(wire, src) }},
			{"decode", func() { ft.decode(acc, wire) }},
			{"decode/ref", refDecode},
			{"add-encode", func() { copy(wire, codes); ft.addEncode(wire, src) }},
			{"add-round/div=4", func() { copy(wire, codes); copy(acc, src); ft.addRound(acc, wire, 4) }},
			{"add-round/div=3", func() { copy(wire, codes); copy(acc, src); ft.addRound(acc, wire, 3) }},
			{"add-round/div=4/steps", func() { steps(4) }},
		} {
			b.Run(ft.name+"/"+k.name, func(b *testing.B) {
				b.SetBytes(4 * n)
				for b.Loop() {
					k.fn()
				}
			})
		}
	}
}
