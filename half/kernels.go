package half

import "unsafe"

// Bulk kernels over little-endian byte slices. dst must hold what src
// describes (2 bytes per element); they panic like a slice index otherwise,
// since a short buffer here is a programming error, not network input.
//
// The narrowing loops take four elements per iteration through
// fixed-length subslices (so the compiler drops the bounds checks and the
// four conversions run independently) and convert them with the short
// path for ordinary values (bf16RNE, fp16Finite); one test per four
// elements sends a group holding a NaN (or, for binary16, an infinite or
// too large value) through the full conversion instead. Both give the same
// bits where both apply, so the result never depends on the path.

// signBit is the bit the special-value tests (bf16NaN, fp16Big) set.
const signBit = 1 << 31

// EncodeBFloat16 narrows src into dst[:2·len(src)].
func EncodeBFloat16(dst []byte, src []float32) {
	d := u16(dst[:2*len(src)])[:len(src)]
	b := u32(src)
	k := encodeBF16Vec(d, b) // the leading elements a vector kernel took, if any
	encodeBF16(d[k:], b[k:])
}

// encodeBF16 is EncodeBFloat16 in Go, over codes.
func encodeBF16(d []uint16, b []uint32) {
	d = d[:len(b)]
	i := 0
	for ; i+4 <= len(b); i += 4 {
		s, o := b[i:i+4:i+4], d[i:i+4:i+4]
		if (bf16NaN(s[0])|bf16NaN(s[1])|bf16NaN(s[2])|bf16NaN(s[3]))&signBit != 0 { // rare: the full conversion
			o[0], o[1], o[2], o[3] = bf16(s[0]), bf16(s[1]), bf16(s[2]), bf16(s[3])
		} else {
			o[0], o[1], o[2], o[3] = bf16RNE(s[0]), bf16RNE(s[1]), bf16RNE(s[2]), bf16RNE(s[3])
		}
	}
	for ; i < len(b); i++ {
		d[i] = bf16(b[i])
	}
}

// EncodeExactBFloat16 encodes src into dst[:2·len(src)] like
// EncodeBFloat16 for values that are exactly bfloat16 (every value
// RoundBFloat16 or DecodeBFloat16 leaves): it keeps the top 16 bits and
// skips the rounding, so it is several times cheaper. Any other value is
// truncated (rounded toward zero), and a decoded signalling NaN keeps its
// code instead of being made quiet; the ring uses it only where Buf holds
// decoded or rounded values.
func EncodeExactBFloat16(dst []byte, src []float32) {
	d := u16(dst[:2*len(src)])[:len(src)]
	b := u32(src)
	k := truncBF16Vec(d, b)
	truncBF16(d[k:], b[k:])
}

// truncBF16 is EncodeExactBFloat16 in Go, over codes.
func truncBF16(d []uint16, b []uint32) {
	d = d[:len(b)]
	for i, x := range b {
		d[i] = uint16(x >> 16)
	}
}

// EncodeFloat16 narrows src into dst[:2·len(src)].
func EncodeFloat16(dst []byte, src []float32) {
	d := u16(dst[:2*len(src)])[:len(src)]
	b := u32(src)
	k := encodeFP16Vec(d, b) // the leading elements a vector kernel took, if any
	encodeFP16(d[k:], b[k:])
}

// encodeFP16 is EncodeFloat16 in Go, over codes.
func encodeFP16(d []uint16, b []uint32) {
	d = d[:len(b)]
	i := 0
	for ; i+4 <= len(b); i += 4 {
		s, o := b[i:i+4:i+4], d[i:i+4:i+4]
		if (fp16Big(s[0])|fp16Big(s[1])|fp16Big(s[2])|fp16Big(s[3]))&signBit != 0 { // rare: the full conversion
			o[0], o[1], o[2], o[3] = fp16(s[0]), fp16(s[1]), fp16(s[2]), fp16(s[3])
		} else {
			o[0], o[1], o[2], o[3] = fp16Finite(s[0]), fp16Finite(s[1]), fp16Finite(s[2]), fp16Finite(s[3])
		}
	}
	for ; i < len(b); i++ {
		d[i] = fp16(b[i])
	}
}

// DecodeBFloat16 widens src[:2·len(dst)] into dst.
func DecodeBFloat16(dst []float32, src []byte) {
	s := u16(src[:2*len(dst)])[:len(dst)]
	o := u32(dst)
	k := decodeBF16Vec(o, s)
	decodeBF16(o[k:], s[k:])
}

// decodeBF16 is DecodeBFloat16 in Go, over codes.
func decodeBF16(o []uint32, s []uint16) {
	o = o[:len(s)]
	i := 0
	for ; i+4 <= len(s); i += 4 {
		a, b := s[i:i+4:i+4], o[i:i+4:i+4]
		b[0] = uint32(a[0]) << 16
		b[1] = uint32(a[1]) << 16
		b[2] = uint32(a[2]) << 16
		b[3] = uint32(a[3]) << 16
	}
	for ; i < len(s); i++ {
		o[i] = uint32(s[i]) << 16
	}
}

// DecodeFloat16 widens src[:2·len(dst)] into dst.
func DecodeFloat16(dst []float32, src []byte) {
	s := u16(src[:2*len(dst)])[:len(dst)]
	o := u32(dst)
	k := decodeFP16Vec(o, s)
	decodeFP16(o[k:], s[k:])
}

// decodeFP16 is DecodeFloat16 in Go, over codes.
func decodeFP16(o []uint32, s []uint16) {
	o = o[:len(s)]
	i := 0
	for ; i+4 <= len(s); i += 4 {
		a, b := s[i:i+4:i+4], o[i:i+4:i+4]
		b[0] = fromFP16(uint32(a[0]))
		b[1] = fromFP16(uint32(a[1]))
		b[2] = fromFP16(uint32(a[2]))
		b[3] = fromFP16(uint32(a[3]))
	}
	for ; i < len(s); i++ {
		o[i] = fromFP16(uint32(s[i]))
	}
}

// ExpandBFloat16 widens, in place, the len(x) bfloat16 codes that occupy
// the upper half of x's memory (its bytes 2·len(x) to 4·len(x),
// little-endian) into x: x then holds what DecodeBFloat16 would decode from
// them. Going forward is safe: element i overwrites only codes below
// 2i−len(x)+2, which are already read (the vector loop reads its eight
// codes before it writes).
func ExpandBFloat16(x []float32) {
	n := len(x)
	if n == 0 {
		return
	}
	s := u16(unsafe.Slice((*byte)(unsafe.Pointer(&x[0])), 4*n)[2*n:])
	o := u32(x)
	k := decodeBF16Vec(o, s)
	for i := k; i < n; i++ { // one element at a time: its code is read before its word is written
		o[i] = uint32(s[i]) << 16
	}
}

// RoundBFloat16 replaces every element of x by its nearest bfloat16 value,
// as widened back to float32: x then holds exactly what a decoder of its
// encoding would.
func RoundBFloat16(x []float32) {
	o := u32(x)
	for i, b := range o {
		o[i] = uint32(bf16(b)) << 16
	}
}

// RoundFloat16 replaces every element of x by its nearest binary16 value.
func RoundFloat16(x []float32) {
	o := u32(x)
	for i, b := range o {
		o[i] = fromFP16(uint32(fp16(b)))
	}
}

// u16 views b as native-order 16-bit words, which are little-endian on
// every host ringtrain builds for (endian_check.go stops big-endian
// builds). An odd trailing byte is not part of the view.
func u16(b []byte) []uint16 {
	if len(b) < 2 {
		return nil
	}
	return unsafe.Slice((*uint16)(unsafe.Pointer(unsafe.SliceData(b))), len(b)/2)
}

// u32 views f as its bit patterns (the same memory).
func u32(f []float32) []uint32 {
	if len(f) == 0 {
		return nil
	}
	return unsafe.Slice((*uint32)(unsafe.Pointer(unsafe.SliceData(f))), len(f))
}
