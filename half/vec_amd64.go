package half

// The bfloat16 kernels' vector paths on amd64: SSE2 (part of every amd64
// CPU, so nothing to detect), eight elements per iteration, and for the
// rounding kernels AVX2 where the CPU has it, sixteen, with exactly
// the Go kernels' results: the same integer rounding and NaN selection
// (bf16), and IEEE single-precision additions and multiplications, which
// round as Go's float32 arithmetic does (Go keeps MXCSR at its default:
// round to nearest even, no flush of subnormals). Which NaN payload an
// addition of two NaNs keeps may differ, as it may between Go compilations;
// the tests accept any NaN there. Each returns how many leading elements
// it did (a multiple of 8); the Go kernel does the rest.

// useAVX2 is set once, when the package is initialised, from CPUID (AVX2,
// and the OS saving the YMM registers); it is never written afterwards.
// With it the encoding and fused kernels take sixteen elements per
// iteration (avx2_amd64.s), with the same results.
var useAVX2 = hasAVX2()

func hasAVX2() bool

//go:noescape
func encodeBF16AVX2(dst *uint16, src *uint32, n int)

//go:noescape
func addEncodeBF16AVX2(w *uint16, acc *uint32, n int)

//go:noescape
func addRoundBF16AVX2(acc *uint32, w *uint16, n int, mul float32)

//go:noescape
func encodeBF16SSE2(dst *uint16, src *uint32, n int)

//go:noescape
func truncBF16SSE2(dst *uint16, src *uint32, n int)

//go:noescape
func decodeBF16SSE2(dst *uint32, src *uint16, n int)

//go:noescape
func addEncodeBF16SSE2(w *uint16, acc *uint32, n int)

//go:noescape
func addRoundBF16SSE2(acc *uint32, w *uint16, n int, mul float32)

// avx2Part is how many of n leading elements (a multiple of 8) the AVX2
// kernels take: a multiple of 16, none without AVX2.
func avx2Part(n int) int {
	if useAVX2 {
		return n &^ 15
	}
	return 0
}

func encodeBF16Vec(d []uint16, b []uint32) int {
	n := min(len(d), len(b)) &^ 7
	k := avx2Part(n)
	if k > 0 {
		encodeBF16AVX2(&d[0], &b[0], k)
	}
	if n > k {
		encodeBF16SSE2(&d[k], &b[k], n-k)
	}
	return n
}

func truncBF16Vec(d []uint16, b []uint32) int {
	n := min(len(d), len(b)) &^ 7
	if n > 0 {
		truncBF16SSE2(&d[0], &b[0], n)
	}
	return n
}

func decodeBF16Vec(o []uint32, s []uint16) int {
	n := min(len(o), len(s)) &^ 7
	if n > 0 {
		decodeBF16SSE2(&o[0], &s[0], n)
	}
	return n
}

func addEncodeBF16Vec(d []uint16, a []uint32) int {
	n := min(len(d), len(a)) &^ 7
	k := avx2Part(n)
	if k > 0 {
		addEncodeBF16AVX2(&d[0], &a[0], k)
	}
	if n > k {
		addEncodeBF16SSE2(&d[k], &a[k], n-k)
	}
	return n
}

// addRoundBF16Vec multiplies by mul, which must be exact (reciprocal).
func addRoundBF16Vec(a []uint32, d []uint16, mul float32) int {
	n := min(len(d), len(a)) &^ 7
	k := avx2Part(n)
	if k > 0 {
		addRoundBF16AVX2(&a[0], &d[0], k, mul)
	}
	if n > k {
		addRoundBF16SSE2(&a[k], &d[k], n-k, mul)
	}
	return n
}
