package half

import "math"

// The straightforward conversions, case by case with branches, as the
// package had them before the branch-free versions: the reference every
// faster path is compared with, bit for bit (and the baseline of the
// benchmarks).

func refNarrowBF16(f float32) uint16 {
	b := math.Float32bits(f)
	if b&0x7fffffff > 0x7f800000 {
		return uint16(b>>16) | 0x0040
	}
	return uint16((b + 0x7fff + (b>>16)&1) >> 16)
}

func refNarrowFP16(f float32) uint16 {
	b := math.Float32bits(f)
	sign := uint16(b>>16) & 0x8000
	exp := int(b>>23) & 0xff
	man := b & 0x7fffff
	switch {
	case exp == 0xff:
		if man != 0 {
			return sign | 0x7e00 | uint16(man>>13)
		}
		return sign | 0x7c00
	case exp > 127+15:
		return sign | 0x7c00
	case exp >= 127-14:
		v := uint32(exp-(127-15))<<10 | man>>13
		rem := man & 0x1fff
		if rem > 0x1000 || (rem == 0x1000 && v&1 == 1) {
			v++
		}
		return sign | uint16(v)
	case exp < 127-25:
		return sign
	}
	m := man | 0x800000
	shift := uint(126 - exp)
	v := m >> shift
	rem := m & (1<<shift - 1)
	halfway := uint32(1) << (shift - 1)
	if rem > halfway || (rem == halfway && v&1 == 1) {
		v++
	}
	return sign | uint16(v)
}

func refWidenFP16(h uint16) float32 {
	sign := uint32(h&0x8000) << 16
	exp := uint32(h>>10) & 0x1f
	man := uint32(h & 0x3ff)
	switch exp {
	case 0x1f:
		return math.Float32frombits(sign | 0x7f800000 | man<<13)
	case 0:
		return math.Float32frombits(sign | math.Float32bits(float32(man)*0x1p-24))
	}
	return math.Float32frombits(sign | (exp+(127-15))<<23 | man<<13)
}

func refWidenBF16(h uint16) float32 { return math.Float32frombits(uint32(h) << 16) }

// format is one 16-bit format under test: the fast kernels and the
// reference scalars.
type format struct {
	name      string
	narrow    func(float32) uint16 // the package's scalar
	widen     func(uint16) float32
	refNarrow func(float32) uint16
	refWiden  func(uint16) float32
	encode    func([]byte, []float32)
	decode    func([]float32, []byte)
	round     func([]float32)
	addEncode func([]byte, []float32)
	addRound  func([]float32, []byte, float32)
	// encodeExact encodes values that are already of the format (the
	// ring's Codec.Exact; fp16 has none and uses encode).
	encodeExact func([]byte, []float32)
}

// formats lists the kernels as the package runs them (bf16 with its vector
// path where the host has one, vec_*.go; fp16 with F16C where the CPU has
// it, f16c_amd64.go) and, as "bf16/go" and "fp16/go", the Go kernels
// alone: what every other host runs; archFormats adds the vector paths a
// host may skip (amd64 without AVX2 runs "bf16/sse2").
var formats = append([]format{
	{"bf16", BFloat16, FromBFloat16, refNarrowBF16, refWidenBF16, EncodeBFloat16, DecodeBFloat16, RoundBFloat16, AddEncodeBFloat16, AddRoundBFloat16, EncodeExactBFloat16},
	{"bf16/go", BFloat16, FromBFloat16, refNarrowBF16, refWidenBF16, goEncodeBF16, goDecodeBF16, RoundBFloat16, goAddEncodeBF16, goAddRoundBF16, goEncodeExactBF16},
	{"fp16", Float16, FromFloat16, refNarrowFP16, refWidenFP16, EncodeFloat16, DecodeFloat16, RoundFloat16, AddEncodeFloat16, AddRoundFloat16, EncodeFloat16},
	{"fp16/go", Float16, FromFloat16, refNarrowFP16, refWidenFP16, goEncodeFP16, goDecodeFP16, RoundFloat16, goAddEncodeFP16, goAddRoundFP16, goEncodeFP16},
}, archFormats...)

func goEncodeBF16(dst []byte, src []float32) { encodeBF16(u16(dst[:2*len(src)]), u32(src)) }

func goEncodeExactBF16(dst []byte, src []float32) { truncBF16(u16(dst[:2*len(src)]), u32(src)) }

func goDecodeBF16(dst []float32, src []byte) { decodeBF16(u32(dst), u16(src[:2*len(dst)])) }

func goAddEncodeBF16(w []byte, acc []float32) { addEncodeBF16(u16(w[:2*len(acc)]), acc) }

func goAddRoundBF16(acc []float32, w []byte, div float32) {
	addRoundBF16(u32(acc), u16(w[:2*len(acc)]), div)
}

func goEncodeFP16(dst []byte, src []float32) { encodeFP16(u16(dst[:2*len(src)]), u32(src)) }

func goDecodeFP16(dst []float32, src []byte) { decodeFP16(u32(dst), u16(src[:2*len(dst)])) }

func goAddEncodeFP16(w []byte, acc []float32) { addEncodeFP16(u16(w[:2*len(acc)]), acc) }

func goAddRoundFP16(acc []float32, w []byte, div float32) {
	addRoundFP16(u32(acc), u16(w[:2*len(acc)]), div)
}
