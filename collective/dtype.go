package collective

import (
	"fmt"
	"strings"

	"github.com/ringtrain/ringtrain/half"
	"github.com/ringtrain/ringtrain/ring"
)

// DType is the element type of an all-reduce on the wire. Buffers are
// always float32 in memory; a 16-bit wire type halves the bytes sent.
//
// How a 16-bit all-reduce computes (ring of n members, per element):
// every hop of the reduce-scatter decodes the chunk it receives to float32,
// reduces it with its own float32 input in float32 and encodes the partial
// result once (round to nearest even) for the next hop; the segment's owner
// makes the last reduction, applies Avg's division once in float32 and
// rounds the result once to the wire type, keeps that rounded value itself
// and sends it around in the all-gather, where every hop decodes and
// re-encodes it exactly. So every member ends with bitwise the same values,
// each exactly representable in the wire type.
//
// Error bound (Sum and Avg, n members, inputs x_1..x_n of one element, no
// overflow): a value goes through n wire roundings (the first member's
// input, n−2 partial sums, the final result) and at most n float32
// roundings (n−1 additions, Avg's division), each of relative error at most
// the unit roundoff u (normal range). Hence
//
//	|result − Σx_i| ≤ ((1+u_w)^n · (1+u_32)^n − 1) · Σ|x_i| + n·τ_w
//
// (divide the right side's first term by n for Avg), with u_w = 2^-8 for
// bf16, 2^-11 for fp16, 2^-24 for fp32, and τ_w the largest absolute error
// of rounding a subnormal: 2^-25 for fp16, 2^-134 for bf16. For inputs of
// one sign Σ|x_i| = |Σx_i|, so the relative error is at most about n·u_w:
// 2^-8 per rounding for bf16 (6.3% at n = 16), 2^-11 for fp16. fp16
// overflows to ±Inf once a partial sum reaches 65520 in magnitude (the
// bound does not apply); bf16 has float32's range. Max and Min are exact
// up to one rounding of the result (rounding is monotonic). ErrorBound
// computes the bound.
type DType uint8

// Wire types.
const (
	Float32 DType = iota
	BFloat16
	Float16
)

// ParseDType reads a wire type: "fp32"/"float32", "bf16"/"bfloat16" or
// "fp16"/"float16" (case-insensitive).
func ParseDType(s string) (DType, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "fp32", "float32":
		return Float32, nil
	case "bf16", "bfloat16":
		return BFloat16, nil
	case "fp16", "float16":
		return Float16, nil
	}
	return 0, fmt.Errorf("collective: unknown wire dtype %q (want fp32, bf16 or fp16)", s)
}

func (d DType) String() string {
	switch d {
	case Float32:
		return "fp32"
	case BFloat16:
		return "bf16"
	case Float16:
		return "fp16"
	}
	return fmt.Sprintf("dtype(%d)", uint8(d))
}

// Size is the number of bytes per element on the wire.
func (d DType) Size() int {
	if d == BFloat16 || d == Float16 {
		return 2
	}
	return 4
}

func (d DType) valid() bool { return d <= Float16 }

// Unit is the unit roundoff of d: the largest relative error of rounding a
// float32 in d's normal range to d.
func (d DType) Unit() float64 {
	switch d {
	case BFloat16:
		return half.BFloat16Unit
	case Float16:
		return half.Float16Unit
	}
	return half.Float32Unit
}

// ErrorBound returns (γ, τ) of the bound above for an n-member Sum or Avg
// over wire type d: |result − Σx| ≤ γ·Σ|x| + τ (γ·Σ|x|/n + τ for Avg).
func (d DType) ErrorBound(n int) (gamma, tau float64) {
	if n <= 1 {
		return 0, 0 // one member: the input is the result, untouched
	}
	g := 1.0
	for range n {
		g *= (1 + d.Unit()) * (1 + half.Float32Unit)
	}
	switch d {
	case BFloat16:
		tau = float64(n) * half.BFloat16Tiny
	case Float16:
		tau = float64(n) * half.Float16Tiny
	default:
		tau = float64(n) * 0x1p-150 // float32 subnormal half-spacing
	}
	return g - 1, tau
}

// codec builds the ring's encoder for d (nil for float32: its bytes travel
// as they are in memory). Each Group builds its own at New.
func (d DType) codec() *ring.Codec {
	switch d {
	case BFloat16:
		return &ring.Codec{Size: 2, Encode: half.EncodeBFloat16, Decode: half.DecodeBFloat16, Round: half.RoundBFloat16,
			AddEncode: half.AddEncodeBFloat16, AddRound: half.AddRoundBFloat16, Exact: half.EncodeExactBFloat16, Expand: half.ExpandBFloat16}
	case Float16:
		return &ring.Codec{Size: 2, Encode: half.EncodeFloat16, Decode: half.DecodeFloat16, Round: half.RoundFloat16,
			AddEncode: half.AddEncodeFloat16, AddRound: half.AddRoundFloat16}
	}
	return nil
}
