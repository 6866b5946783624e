package half

import "encoding/binary"

// Bulk kernels over little-endian byte slices. dst must hold what src
// describes (2 bytes per element); they panic like a slice index otherwise,
// since a short buffer here is a programming error, not network input.

// EncodeBFloat16 narrows src into dst[:2·len(src)].
func EncodeBFloat16(dst []byte, src []float32) {
	dst = dst[:2*len(src)]
	for i, v := range src {
		binary.LittleEndian.PutUint16(dst[2*i:2*i+2], BFloat16(v))
	}
}

// DecodeBFloat16 widens src[:2·len(dst)] into dst.
func DecodeBFloat16(dst []float32, src []byte) {
	src = src[:2*len(dst)]
	for i := range dst {
		dst[i] = FromBFloat16(binary.LittleEndian.Uint16(src[2*i : 2*i+2]))
	}
}

// RoundBFloat16 replaces every element of x by its nearest bfloat16 value,
// as widened back to float32: x then holds exactly what a decoder of its
// encoding would.
func RoundBFloat16(x []float32) {
	for i, v := range x {
		x[i] = FromBFloat16(BFloat16(v))
	}
}

// EncodeFloat16 narrows src into dst[:2·len(src)].
func EncodeFloat16(dst []byte, src []float32) {
	dst = dst[:2*len(src)]
	for i, v := range src {
		binary.LittleEndian.PutUint16(dst[2*i:2*i+2], Float16(v))
	}
}

// DecodeFloat16 widens src[:2·len(dst)] into dst.
func DecodeFloat16(dst []float32, src []byte) {
	src = src[:2*len(dst)]
	for i := range dst {
		dst[i] = FromFloat16(binary.LittleEndian.Uint16(src[2*i : 2*i+2]))
	}
}

// RoundFloat16 replaces every element of x by its nearest binary16 value.
func RoundFloat16(x []float32) {
	for i, v := range x {
		x[i] = FromFloat16(Float16(v))
	}
}
