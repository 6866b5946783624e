package half

import "unsafe"

// Bulk kernels over little-endian byte slices. dst must hold what src
// describes (2 bytes per element); they panic like a slice index otherwise,
// since a short buffer here is a programming error, not network input.

// EncodeBFloat16 narrows src into dst[:2·len(src)].
func EncodeBFloat16(dst []byte, src []float32) {
	d := u16(dst[:2*len(src)])
	d = d[:len(src)]
	for i, v := range src {
		d[i] = BFloat16(v)
	}
}

// DecodeBFloat16 widens src[:2·len(dst)] into dst.
func DecodeBFloat16(dst []float32, src []byte) {
	s := u16(src[:2*len(dst)])
	s = s[:len(dst)]
	for i, h := range s {
		dst[i] = FromBFloat16(h)
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
	d := u16(dst[:2*len(src)])
	d = d[:len(src)]
	for i, v := range src {
		d[i] = Float16(v)
	}
}

// DecodeFloat16 widens src[:2·len(dst)] into dst.
func DecodeFloat16(dst []float32, src []byte) {
	s := u16(src[:2*len(dst)])
	s = s[:len(dst)]
	for i, h := range s {
		dst[i] = FromFloat16(h)
	}
}

// RoundFloat16 replaces every element of x by its nearest binary16 value.
func RoundFloat16(x []float32) {
	for i, v := range x {
		x[i] = FromFloat16(Float16(v))
	}
}

// u16 views b as native-order 16-bit words, which are little-endian on
// every host ringtrain builds for (ring/endian_check.go stops big-endian
// builds). An odd trailing byte is not part of the view.
func u16(b []byte) []uint16 {
	if len(b) < 2 {
		return nil
	}
	return unsafe.Slice((*uint16)(unsafe.Pointer(unsafe.SliceData(b))), len(b)/2)
}
