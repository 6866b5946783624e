package main

import (
	"fmt"
	"math"
	"strings"
)

// dtype is a buffer's element type at the C ABI; the values are the C
// constants RT_FP32, RT_BF16, RT_FP16 (the order of collective's DType).
type dtype int32

const (
	fp32 dtype = iota
	bf16
	fp16
)

func (d dtype) String() string {
	switch d {
	case fp32:
		return "fp32"
	case bf16:
		return "bf16"
	case fp16:
		return "fp16"
	}
	return fmt.Sprintf("dtype(%d)", int32(d))
}

// size is the bytes per element.
func (d dtype) size() int {
	if d == fp32 {
		return 4
	}
	return 2
}

func (d dtype) valid() bool { return d >= fp32 && d <= fp16 }

func parseDType(s string) (dtype, error) {
	switch strings.ToLower(s) {
	case "fp32", "float32":
		return fp32, nil
	case "bf16", "bfloat16":
		return bf16, nil
	case "fp16", "float16", "half":
		return fp16, nil
	}
	return 0, fmt.Errorf("unknown dtype %q (want fp32, bf16 or fp16)", s)
}

// toFloat32 widens src (bf16 or fp16 bit patterns) into dst, exactly.
func toFloat32(dst []float32, src []uint16, d dtype) {
	if d == bf16 {
		for i, h := range src {
			dst[i] = math.Float32frombits(uint32(h) << 16)
		}
		return
	}
	for i, h := range src {
		dst[i] = halfToFloat(h)
	}
}

// fromFloat32 narrows src into dst (bf16 or fp16), rounding to nearest
// even as PyTorch does; NaN stays NaN.
func fromFloat32(dst []uint16, src []float32, d dtype) {
	if d == bf16 {
		for i, f := range src {
			b := math.Float32bits(f)
			if b&0x7fffffff > 0x7f800000 { // NaN: keep it quiet, never round to Inf
				dst[i] = uint16(b>>16) | 0x40
				continue
			}
			dst[i] = uint16((b + 0x7fff + (b>>16)&1) >> 16)
		}
		return
	}
	for i, f := range src {
		dst[i] = floatToHalf(f)
	}
}

func halfToFloat(h uint16) float32 {
	sign := uint32(h>>15) << 31
	exp := uint32(h>>10) & 0x1f
	man := uint32(h) & 0x3ff
	switch {
	case exp == 0x1f: // Inf or NaN
		return math.Float32frombits(sign | 0x7f800000 | man<<13)
	case exp == 0:
		if man == 0 {
			return math.Float32frombits(sign)
		}
		// Subnormal: the value is man·2^-24.
		f := float32(man) * (1.0 / (1 << 24))
		if sign != 0 {
			return -f
		}
		return f
	}
	return math.Float32frombits(sign | (exp+112)<<23 | man<<13)
}

func floatToHalf(f float32) uint16 {
	b := math.Float32bits(f)
	sign := uint16(b>>16) & 0x8000
	exp := int32(b>>23) & 0xff
	man := b & 0x7fffff
	switch {
	case exp == 0xff: // Inf or NaN
		if man != 0 {
			return sign | 0x7e00
		}
		return sign | 0x7c00
	case exp-127 > 15: // overflow
		return sign | 0x7c00
	case exp-127 >= -14: // normal: round the 13 dropped bits to nearest even
		e := uint32(exp-127+15) << 10
		m := man >> 13
		rest := man & 0x1fff
		v := e | m
		if rest > 0x1000 || (rest == 0x1000 && m&1 == 1) {
			v++ // may carry into the exponent, up to Inf: correct
		}
		return sign | uint16(v)
	case exp-127 >= -25: // subnormal half
		m := man | 0x800000
		shift := uint32(-14 - (exp - 127) + 13)
		v := m >> shift
		rest := m & (1<<shift - 1)
		half := uint32(1) << (shift - 1)
		if rest > half || (rest == half && v&1 == 1) {
			v++
		}
		return sign | uint16(v)
	}
	return sign
}
