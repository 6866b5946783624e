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
func BFloat16(f float32) uint16 {
	b := math.Float32bits(f)
	if b&0x7fffffff > 0x7f800000 { // NaN: keep sign and payload top, make quiet
		return uint16(b>>16) | 0x0040
	}
	// Adding 0x7fff plus the bit that becomes the last kept one rounds
	// half-way cases to even; a carry into the exponent is the correct
	// result (up to +Inf for values above the largest bfloat16).
	return uint16((b + 0x7fff + (b>>16)&1) >> 16)
}

// FromBFloat16 widens bfloat16 bits to float32 (exact).
func FromBFloat16(h uint16) float32 { return math.Float32frombits(uint32(h) << 16) }

// Float16 narrows f to IEEE binary16 bits, rounding to nearest even.
func Float16(f float32) uint16 {
	b := math.Float32bits(f)
	sign := uint16(b>>16) & 0x8000
	exp := int(b>>23) & 0xff
	man := b & 0x7fffff
	switch {
	case exp == 0xff: // Inf or NaN
		if man != 0 {
			return sign | 0x7e00 | uint16(man>>13)
		}
		return sign | 0x7c00
	case exp > 127+15: // |f| ≥ 2^16: beyond the binary16 range
		return sign | 0x7c00
	case exp >= 127-14: // normal binary16 result (before rounding)
		v := uint32(exp-(127-15))<<10 | man>>13
		rem := man & 0x1fff
		if rem > 0x1000 || (rem == 0x1000 && v&1 == 1) {
			v++ // a carry into the exponent is right, up to 0x7c00 = Inf
		}
		return sign | uint16(v)
	case exp < 127-25: // |f| < 2^-25: rounds to zero
		return sign
	}
	// Subnormal binary16 result: count units of 2^-24. exp is in
	// [102, 112], so f is a normal float32 with an implicit bit.
	m := man | 0x800000
	shift := uint(126 - exp) // 14..24
	v := m >> shift
	rem := m & (1<<shift - 1)
	halfway := uint32(1) << (shift - 1)
	if rem > halfway || (rem == halfway && v&1 == 1) {
		v++ // may become 0x400, the smallest normal: also correct
	}
	return sign | uint16(v)
}

// FromFloat16 widens binary16 bits to float32 (exact).
func FromFloat16(h uint16) float32 {
	sign := uint32(h&0x8000) << 16
	exp := uint32(h>>10) & 0x1f
	man := uint32(h & 0x3ff)
	switch exp {
	case 0x1f:
		return math.Float32frombits(sign | 0x7f800000 | man<<13)
	case 0:
		// Zero or subnormal: man·2^-24, exact in float32.
		return math.Float32frombits(sign | math.Float32bits(float32(man)*0x1p-24))
	}
	return math.Float32frombits(sign | (exp+(127-15))<<23 | man<<13)
}
