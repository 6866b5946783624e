package main

import (
	"fmt"
	"strings"
	"unsafe"

	"github.com/ringtrain/ringtrain/half"
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

// widen decodes a 16-bit buffer (host byte order: little-endian on every
// platform we build for) into dst.
func widen(dst []float32, src unsafe.Pointer, d dtype) {
	b := unsafe.Slice((*byte)(src), 2*len(dst))
	if d == bf16 {
		half.DecodeBFloat16(dst, b)
	} else {
		half.DecodeFloat16(dst, b)
	}
}

// narrow encodes src back into the 16-bit buffer, rounding to nearest even.
func narrow(dst unsafe.Pointer, src []float32, d dtype) {
	b := unsafe.Slice((*byte)(dst), 2*len(src))
	if d == bf16 {
		half.EncodeBFloat16(b, src)
	} else {
		half.EncodeFloat16(b, src)
	}
}
