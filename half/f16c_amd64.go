package half

// The binary16 kernels' vector paths on amd64: F16C's VCVTPS2PH (rounding
// to nearest even, immediate 0) and VCVTPH2PS, eight elements per
// iteration, with AVX additions and multiplications. F16C is not part of
// every amd64 CPU, so the package uses it only where CPUID reports AVX and
// F16C and the OS saves the YMM registers (XGETBV); elsewhere the Go
// kernels do everything. The results are the Go kernels' bits: the
// conversions are IEEE round-to-nearest-even in both directions,
// subnormals included (F16C ignores MXCSR's DAZ and FTZ, which Go leaves
// off anyway), a NaN narrows to the quiet NaN with the top payload bits as
// fp16 makes it, and where VCVTPH2PS would quiet a signalling binary16
// NaN the decoder puts back the exact widening fromFP16 gives. As with
// bf16, which NaN payload an addition of two NaNs keeps may differ from
// the Go kernels; the tests accept any NaN there.

// useF16C is set once, when the package is initialised, from CPUID; it is
// never written afterwards.
var useF16C = hasF16C()

// hasF16C reports CPUID.1:ECX's OSXSAVE, AVX and F16C bits and XCR0's SSE
// and AVX state bits.
func hasF16C() bool

//go:noescape
func encodeFP16F16C(dst *uint16, src *uint32, n int)

//go:noescape
func decodeFP16F16C(dst *uint32, src *uint16, n int)

//go:noescape
func addEncodeFP16F16C(w *uint16, acc *uint32, n int)

//go:noescape
func addRoundFP16F16C(acc *uint32, w *uint16, n int, mul float32)

// Each returns how many leading elements it did (a multiple of 8; none
// without F16C); the Go kernel does the rest.

func encodeFP16Vec(d []uint16, b []uint32) int {
	n := min(len(d), len(b)) &^ 7
	if n > 0 && useF16C {
		encodeFP16F16C(&d[0], &b[0], n)
		return n
	}
	return 0
}

func decodeFP16Vec(o []uint32, s []uint16) int {
	n := min(len(o), len(s)) &^ 7
	if n > 0 && useF16C {
		decodeFP16F16C(&o[0], &s[0], n)
		return n
	}
	return 0
}

func addEncodeFP16Vec(d []uint16, a []uint32) int {
	n := min(len(d), len(a)) &^ 7
	if n > 0 && useF16C {
		addEncodeFP16F16C(&d[0], &a[0], n)
		return n
	}
	return 0
}

// addRoundFP16Vec multiplies by mul, which must be exact (reciprocal).
func addRoundFP16Vec(a []uint32, d []uint16, mul float32) int {
	n := min(len(d), len(a)) &^ 7
	if n > 0 && useF16C {
		addRoundFP16F16C(&a[0], &d[0], n, mul)
		return n
	}
	return 0
}
