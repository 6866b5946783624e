package half

// archFormats adds the SSE2 kernels alone as "bf16/sse2": where the CPU
// has AVX2 the package's bf16 kernels leave SSE2 only the last eight
// elements, so this is what an amd64 CPU without AVX2 runs.
var archFormats = []format{
	{"bf16/sse2", BFloat16, FromBFloat16, refNarrowBF16, refWidenBF16, sse2EncodeBF16, DecodeBFloat16, RoundBFloat16,
		sse2AddEncodeBF16, sse2AddRoundBF16, EncodeExactBFloat16},
}

func sse2EncodeBF16(dst []byte, src []float32) {
	d, b := u16(dst[:2*len(src)])[:len(src)], u32(src)
	k := len(b) &^ 7
	if k > 0 {
		encodeBF16SSE2(&d[0], &b[0], k)
	}
	encodeBF16(d[k:], b[k:])
}

func sse2AddEncodeBF16(w []byte, acc []float32) {
	d, a := u16(w[:2*len(acc)])[:len(acc)], u32(acc)
	k := len(a) &^ 7
	if k > 0 {
		addEncodeBF16SSE2(&d[0], &a[0], k)
	}
	addEncodeBF16(d[k:], acc[k:])
}

func sse2AddRoundBF16(acc []float32, w []byte, div float32) {
	d, a := u16(w[:2*len(acc)])[:len(acc)], u32(acc)
	k := 0
	if mul, ok := ExactReciprocal(div); ok {
		k = len(a) &^ 7
		if k > 0 {
			addRoundBF16SSE2(&a[0], &d[0], k, mul)
		}
	}
	addRoundBF16(a[k:], d[k:], div)
}
