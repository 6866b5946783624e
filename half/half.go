// Package half converts between float32 and the two 16-bit floating-point
// formats ringtrain puts on the wire: bfloat16 (1 sign, 8 exponent, 7
// fraction bits: float32 with the low 16 bits cut off) and IEEE 754
// binary16 (1 sign, 5 exponent, 10 fraction bits).
//
// Invariants:
//   - Narrowing rounds to nearest, ties to even, as IEEE 754 requires:
//     subnormal results are produced (not flushed), a finite value too large
//     for binary16 becomes ±Inf, ±Inf stays ±Inf, and NaN stays NaN (made
//     quiet, sign and top payload bits kept).
//   - Widening is exact.
//   - Narrowing a widened value gives back the same bits, for every value
//     narrowing can produce (every one but a signalling NaN), so a value can
//     be decoded and re-encoded on every hop of a ring without drifting.
//   - The bulk kernels encode to and decode from little-endian bytes, two
//     per element, and never allocate.
package half

import (
	"math"
)

// Unit roundoffs u = 2^-p for p significand bits: a narrowing of a value
// in the normal range has relative error at most u.
const (
	BFloat16Unit = 1.0 / (1 << 8)  // p = 8
	Float16Unit  = 1.0 / (1 << 11) // p = 11
	Float32Unit  = 1.0 / (1 << 24) // p = 24
)

// Largest finite values and the smallest positive normal values.
const (
	Float16Max       = 65504
	Float16MinNormal = 1.0 / (1 << 14)
	// Float16Tiny is half the spacing of binary16 subnormals (2^-24): the
	// largest absolute error of narrowing a value below Float16MinNormal.
	Float16Tiny = 1.0 / (1 << 25)
	// BFloat16Tiny is the same for bfloat16 (subnormal spacing 2^-133).
	BFloat16Tiny = 0x1p-134
)

// BFloat16 narrows f to bfloat16 bits, rounding to nearest even.
func BFloat16(f float32) uint16 { return bf16(math.Float32bits(f)) }

// bf16 narrows float32 bits. It has no branch the compiler keeps (the NaN
// case is a conditional move), so gradients of any mix of magnitudes cost
// the same.
func bf16(b uint32) uint16 {
	// Adding 0x7fff plus the bit that becomes the last kept one rounds
	// half-way cases to even; a carry into the exponent is the correct
	// result (up to +Inf for values above the largest bfloat16).
	r := (b + 0x7fff + (b>>16)&1) >> 16
	if b&0x7fffffff > 0x7f800000 { // NaN: keep sign and payload top, make quiet
		r = b>>16 | 0x0040
	}
	return uint16(r)
}

// bf16RNE is bf16 for every input but NaN.
func bf16RNE(b uint32) uint16 { return uint16((b + 0x7fff + (b>>16)&1) >> 16) }

// bf16NaN has bit 31 set exactly when b is a NaN (|b| > Inf: adding
// 2^23−1 to |b| ≤ 0x7fffffff carries into bit 31 from 0x7f800001 up).
func bf16NaN(b uint32) uint32 { return b&0x7fffffff + 0x007fffff }

// FromBFloat16 widens bfloat16 bits to float32 (exact).
func FromBFloat16(h uint16) float32 { return math.Float32frombits(uint32(h) << 16) }

// Float16 narrows f to IEEE binary16 bits, rounding to nearest even.
func Float16(f float32) uint16 { return fp16(math.Float32bits(f)) }

// Bit patterns of |f| (float32 bits without the sign) where binary16's
// cases change.
const (
	f16MinNormal = (127 - 14) << 23 // 2^-14, the smallest normal binary16
	f16Overflow  = (127 + 16) << 23 // 2^16: this and above is beyond binary16
	f32Inf       = 0xff << 23
	// rebias moves a float32 exponent to binary16's bias (−112 in the
	// exponent field, modulo 2^32) with 0xfff, half a binary16 unit less
	// one float32 unit, added for rounding.
	rebias = 1<<32 + (15-127)<<23 + 0xfff
)

// fp16 narrows float32 bits to binary16 without tables or kept branches:
// it computes the normal, subnormal and special results and selects one
// with conditional moves, so the cost does not depend on the data.
func fp16(b uint32) uint16 {
	sign := b >> 16 & 0x8000
	a := b & 0x7fffffff
	// Normal result: rebias, and round the 13 dropped bits to nearest even
	// by adding 0xfff plus the lowest kept bit; a carry into the exponent
	// is the correct result, up to 0x7c00 = Inf from 65520 on.
	r := (a + rebias + (a>>13)&1) >> 13
	if a < f16MinNormal {
		// Subnormal or zero result: adding 0.5 (float32 unit 2^-24, the
		// binary16 subnormal spacing) makes the FPU round to a multiple
		// of 2^-24, to nearest even; the low bits are the count of units
		// (0x400, the smallest normal, when it rounds up to it).
		r = math.Float32bits(math.Float32frombits(a)+0.5) - 0x3f000000
	}
	if a >= f16Overflow {
		r = 0x7c00 // beyond the range, or Inf
	}
	if a > f32Inf {
		r = 0x7e00 | a>>13&0x3ff // NaN: quiet, top payload bits kept
	}
	return uint16(sign | r)
}

// fp16Finite is fp16 for every input below 2^16 in magnitude (the normal
// and subnormal cases).
func fp16Finite(b uint32) uint16 {
	a := b & 0x7fffffff
	r := (a + rebias + (a>>13)&1) >> 13
	if a < f16MinNormal {
		r = math.Float32bits(math.Float32frombits(a)+0.5) - 0x3f000000
	}
	return uint16(b>>16&0x8000 | r)
}

// fp16Big has bit 31 set exactly when |b| ≥ 2^16 (too large, Inf or NaN):
// the cases fp16Finite leaves out.
func fp16Big(b uint32) uint32 { return b&0x7fffffff + (1<<31 - f16Overflow) }

// FromFloat16 widens binary16 bits to float32 (exact).
func FromFloat16(h uint16) float32 { return math.Float32frombits(fromFP16(uint32(h))) }

// fromFP16 widens binary16 bits (in the low 16 bits of h) to float32 bits,
// without tables or kept branches.
func fromFP16(h uint32) uint32 {
	m := (h & 0x7fff) << 13 // exponent and fraction in float32's places
	e := h & 0x7c00
	r := m + (127-15)<<23 // normal: rebias the exponent
	if e == 0x7c00 {
		r = m + (0xff-0x1f)<<23 // Inf, NaN: all-ones exponent, payload kept
	}
	if e == 0 {
		// Zero or subnormal, man·2^-24: give it the exponent of 2^-14 and
		// subtract the implicit bit, exactly, in float32.
		r = math.Float32bits(math.Float32frombits(m+f16MinNormal) - 0x1p-14)
	}
	return h&0x8000<<16 | r
}
