package half

import "math"

// Fused kernels for one hop of a ring sum over a 16-bit wire. A hop
// receives a chunk of 16-bit codes, adds it to its own float32 values and
// either passes the rounded partial sum on (AddEncode*) or, at the chunk's
// last reduction, keeps the rounded result and passes it on (AddRound*).
// Decoding, adding, dividing and encoding happen in one pass over the
// chunk, in place in the wire buffer, with the exact results of the
// separate steps: Encode(acc + Decode(w)), and for AddRound
// Round((acc + Decode(w)) / div). The loops are those of the bulk kernels
// (kernels.go): four elements per iteration, the short conversion unless
// a group holds a special value.

// AddEncodeBFloat16 sets w[i] = BFloat16(acc[i] + FromBFloat16(w[i])) for the
// len(acc) codes of w (little-endian, 2 bytes each); acc is not written.
func AddEncodeBFloat16(w []byte, acc []float32) {
	d := u16(w[:2*len(acc)])[:len(acc)]
	k := addEncodeBF16Vec(d, u32(acc))
	addEncodeBF16(d[k:], acc[k:])
}

// addEncodeBF16 is AddEncodeBFloat16 in Go, over codes.
func addEncodeBF16(d []uint16, a []float32) {
	d = d[:len(a)]
	i := 0
	for ; i+4 <= len(a); i += 4 {
		x, o := a[i:i+4:i+4], d[i:i+4:i+4]
		b0 := math.Float32bits(x[0] + FromBFloat16(o[0]))
		b1 := math.Float32bits(x[1] + FromBFloat16(o[1]))
		b2 := math.Float32bits(x[2] + FromBFloat16(o[2]))
		b3 := math.Float32bits(x[3] + FromBFloat16(o[3]))
		if (bf16NaN(b0)|bf16NaN(b1)|bf16NaN(b2)|bf16NaN(b3))&signBit != 0 { // rare: the full conversion
			o[0], o[1], o[2], o[3] = bf16(b0), bf16(b1), bf16(b2), bf16(b3)
		} else {
			o[0], o[1], o[2], o[3] = bf16RNE(b0), bf16RNE(b1), bf16RNE(b2), bf16RNE(b3)
		}
	}
	for ; i < len(a); i++ {
		d[i] = bf16(math.Float32bits(a[i] + FromBFloat16(d[i])))
	}
}

// AddRoundBFloat16 is the last hop: v = (acc[i] + FromBFloat16(w[i])) / div, then
// w[i] = BFloat16(v) and acc[i] = FromBFloat16(w[i]). div = 1 divides by
// nothing.
func AddRoundBFloat16(acc []float32, w []byte, div float32) {
	d := u16(w[:2*len(acc)])[:len(acc)]
	a := u32(acc)
	k := 0
	if mul, ok := ExactReciprocal(div); ok {
		k = addRoundBF16Vec(a, d, mul)
	}
	addRoundBF16(a[k:], d[k:], div)
}

// addRoundBF16 is AddRoundBFloat16 in Go, over bits and codes.
func addRoundBF16(a []uint32, d []uint16, div float32) {
	d = d[:len(a)]
	i := 0
	if mul, ok := ExactReciprocal(div); ok { // exact: multiply (by 1 when div = 1)
		for ; i+4 <= len(a); i += 4 {
			x, o := a[i:i+4:i+4], d[i:i+4:i+4]
			b0 := math.Float32bits((math.Float32frombits(x[0]) + FromBFloat16(o[0])) * mul)
			b1 := math.Float32bits((math.Float32frombits(x[1]) + FromBFloat16(o[1])) * mul)
			b2 := math.Float32bits((math.Float32frombits(x[2]) + FromBFloat16(o[2])) * mul)
			b3 := math.Float32bits((math.Float32frombits(x[3]) + FromBFloat16(o[3])) * mul)
			var h0, h1, h2, h3 uint16
			if (bf16NaN(b0)|bf16NaN(b1)|bf16NaN(b2)|bf16NaN(b3))&signBit != 0 { // rare: the full conversion
				h0, h1, h2, h3 = bf16(b0), bf16(b1), bf16(b2), bf16(b3)
			} else {
				h0, h1, h2, h3 = bf16RNE(b0), bf16RNE(b1), bf16RNE(b2), bf16RNE(b3)
			}
			o[0], o[1], o[2], o[3] = h0, h1, h2, h3
			x[0], x[1], x[2], x[3] = uint32(h0)<<16, uint32(h1)<<16, uint32(h2)<<16, uint32(h3)<<16
		}
	}
	for ; i < len(a); i++ {
		h := bf16(math.Float32bits((math.Float32frombits(a[i]) + FromBFloat16(d[i])) / div))
		d[i], a[i] = h, uint32(h)<<16
	}
}

// AddEncodeFloat16 sets w[i] = Float16(acc[i] + FromFloat16(w[i])) for the
// len(acc) codes of w (little-endian, 2 bytes each); acc is not written.
func AddEncodeFloat16(w []byte, acc []float32) {
	d := u16(w[:2*len(acc)])[:len(acc)]
	k := addEncodeFP16Vec(d, u32(acc))
	addEncodeFP16(d[k:], acc[k:])
}

// addEncodeFP16 is AddEncodeFloat16 in Go, over codes.
func addEncodeFP16(d []uint16, a []float32) {
	d = d[:len(a)]
	i := 0
	for ; i+4 <= len(a); i += 4 {
		x, o := a[i:i+4:i+4], d[i:i+4:i+4]
		b0 := math.Float32bits(x[0] + FromFloat16(o[0]))
		b1 := math.Float32bits(x[1] + FromFloat16(o[1]))
		b2 := math.Float32bits(x[2] + FromFloat16(o[2]))
		b3 := math.Float32bits(x[3] + FromFloat16(o[3]))
		if (fp16Big(b0)|fp16Big(b1)|fp16Big(b2)|fp16Big(b3))&signBit != 0 { // rare: the full conversion
			o[0], o[1], o[2], o[3] = fp16(b0), fp16(b1), fp16(b2), fp16(b3)
		} else {
			o[0], o[1], o[2], o[3] = fp16Finite(b0), fp16Finite(b1), fp16Finite(b2), fp16Finite(b3)
		}
	}
	for ; i < len(a); i++ {
		d[i] = fp16(math.Float32bits(a[i] + FromFloat16(d[i])))
	}
}

// AddRoundFloat16 is the last hop: v = (acc[i] + FromFloat16(w[i])) / div, then
// w[i] = Float16(v) and acc[i] = FromFloat16(w[i]). div = 1 divides by
// nothing.
func AddRoundFloat16(acc []float32, w []byte, div float32) {
	d := u16(w[:2*len(acc)])[:len(acc)]
	a := u32(acc)
	k := 0
	if mul, ok := ExactReciprocal(div); ok {
		k = addRoundFP16Vec(a, d, mul)
	}
	addRoundFP16(a[k:], d[k:], div)
}

// addRoundFP16 is AddRoundFloat16 in Go, over bits and codes.
func addRoundFP16(a []uint32, d []uint16, div float32) {
	d = d[:len(a)]
	i := 0
	if mul, ok := ExactReciprocal(div); ok { // exact: multiply (by 1 when div = 1)
		for ; i+4 <= len(a); i += 4 {
			x, o := a[i:i+4:i+4], d[i:i+4:i+4]
			b0 := math.Float32bits((math.Float32frombits(x[0]) + FromFloat16(o[0])) * mul)
			b1 := math.Float32bits((math.Float32frombits(x[1]) + FromFloat16(o[1])) * mul)
			b2 := math.Float32bits((math.Float32frombits(x[2]) + FromFloat16(o[2])) * mul)
			b3 := math.Float32bits((math.Float32frombits(x[3]) + FromFloat16(o[3])) * mul)
			var h0, h1, h2, h3 uint16
			if (fp16Big(b0)|fp16Big(b1)|fp16Big(b2)|fp16Big(b3))&signBit != 0 { // rare: the full conversion
				h0, h1, h2, h3 = fp16(b0), fp16(b1), fp16(b2), fp16(b3)
			} else {
				h0, h1, h2, h3 = fp16Finite(b0), fp16Finite(b1), fp16Finite(b2), fp16Finite(b3)
			}
			o[0], o[1], o[2], o[3] = h0, h1, h2, h3
			x[0], x[1], x[2], x[3] = fromFP16(uint32(h0)), fromFP16(uint32(h1)), fromFP16(uint32(h2)), fromFP16(uint32(h3))
		}
	}
	for ; i < len(a); i++ {
		h := fp16(math.Float32bits((math.Float32frombits(a[i]) + FromFloat16(d[i])) / div))
		d[i], a[i] = h, fromFP16(uint32(h))
	}
}

// ExactReciprocal returns 1/d and whether multiplying by it equals
// dividing by d for every float32. That holds when d is a power of two whose reciprocal
// is a normal float32: x·2^-k and x/2^k are then both the correctly
// rounded value of the same real number (NaN, ±Inf and ±0 included), and a
// multiplication is many times cheaper than a division.
func ExactReciprocal(d float32) (float32, bool) {
	b := math.Float32bits(d)
	e := b >> 23
	if b&0x7fffff != 0 || e == 0 || e >= 254 { // sign set, not a power of two, subnormal, too large, Inf or NaN
		return 0, false
	}
	return math.Float32frombits((254 - e) << 23), true
}
