package half

// The bfloat16 kernels' vector paths on amd64: SSE2 (part of every amd64
// CPU, so nothing to detect), eight elements per iteration, with exactly
// the Go kernels' results: the same integer rounding and NaN selection
// (bf16), and IEEE single-precision additions and multiplications, which
// round as Go's float32 arithmetic does (Go keeps MXCSR at its default:
// round to nearest even, no flush of subnormals). Which NaN payload an
// addition of two NaNs keeps may differ, as it may between Go compilations;
// the tests accept any NaN there. Each returns how many leading elements
// it did (a multiple of 8); the Go kernel does the rest.

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

func encodeBF16Vec(d []uint16, b []uint32) int {
	n := min(len(d), len(b)) &^ 7
	if n > 0 {
		encodeBF16SSE2(&d[0], &b[0], n)
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
	if n > 0 {
		addEncodeBF16SSE2(&d[0], &a[0], n)
	}
	return n
}

// addRoundBF16Vec multiplies by mul, which must be exact (reciprocal).
func addRoundBF16Vec(a []uint32, d []uint16, mul float32) int {
	n := min(len(d), len(a)) &^ 7
	if n > 0 {
		addRoundBF16SSE2(&a[0], &d[0], n, mul)
	}
	return n
}
