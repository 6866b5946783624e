package ring

import "github.com/ringtrain/ringtrain/half"

// Reduction kernels: dst op= src over len(dst) elements (src must be at
// least as long). They are written so the compiler drops bounds checks in
// the loop; four-way unrolling keeps several independent adds in flight.

// Sum adds src into dst.
func Sum(dst, src []float32) {
	src = src[:len(dst)]
	i := 0
	for ; i+4 <= len(dst); i += 4 {
		d := dst[i : i+4 : i+4]
		s := src[i : i+4 : i+4]
		d[0] += s[0]
		d[1] += s[1]
		d[2] += s[2]
		d[3] += s[3]
	}
	for ; i < len(dst); i++ {
		dst[i] += src[i]
	}
}

// Max keeps the larger of dst and src.
func Max(dst, src []float32) {
	src = src[:len(dst)]
	for i, v := range src {
		if v > dst[i] {
			dst[i] = v
		}
	}
}

// Min keeps the smaller of dst and src.
func Min(dst, src []float32) {
	src = src[:len(dst)]
	for i, v := range src {
		if v < dst[i] {
			dst[i] = v
		}
	}
}

// Div divides dst by f. (Division, not multiplication by 1/f, so that an
// average equals sum/n exactly as a user computes it; when f is a power of
// two with a normal reciprocal, multiplying by it is that same division,
// bit for bit, and several times cheaper.)
func Div(dst []float32, f float32) {
	if r, ok := half.ExactReciprocal(f); ok {
		for i := range dst {
			dst[i] *= r
		}
		return
	}
	for i := range dst {
		dst[i] /= f
	}
}
