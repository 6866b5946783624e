package optim

import (
	"encoding/binary"
	"fmt"
	"math"
)

// Serialized optimizer state, little endian:
//
//	"RTOP" | version u16 | name length u8 | name | step u64 | vector count u8 |
//	per vector: length u64 | length×float32
//
// An absent vector (state not yet allocated) has length 0.

const (
	stateMagic   = "RTOP"
	stateVersion = 1
)

func encodeState(name string, t uint64, vecs ...[]float32) []byte {
	n := len(stateMagic) + 2 + 1 + len(name) + 8 + 1
	for _, v := range vecs {
		n += 8 + 4*len(v)
	}
	b := make([]byte, 0, n)
	b = append(b, stateMagic...)
	b = binary.LittleEndian.AppendUint16(b, stateVersion)
	b = append(b, byte(len(name)))
	b = append(b, name...)
	b = binary.LittleEndian.AppendUint64(b, t)
	b = append(b, byte(len(vecs)))
	for _, v := range vecs {
		b = binary.LittleEndian.AppendUint64(b, uint64(len(v)))
		for _, f := range v {
			b = binary.LittleEndian.AppendUint32(b, math.Float32bits(f))
		}
	}
	return b
}

// decodeState parses state written by encodeState for optimizer name with
// exactly nvec vectors. Empty vectors decode as nil.
func decodeState(b []byte, name string, nvec int) (uint64, [][]float32, error) {
	bad := func(what string) error { return fmt.Errorf("%w: %s", ErrState, what) }
	if len(b) < len(stateMagic)+3 || string(b[:4]) != stateMagic {
		return 0, nil, bad("missing header")
	}
	if v := binary.LittleEndian.Uint16(b[4:]); v != stateVersion {
		return 0, nil, bad(fmt.Sprintf("version %d, want %d", v, stateVersion))
	}
	b = b[6:]
	nl := int(b[0])
	b = b[1:]
	if len(b) < nl+9 {
		return 0, nil, bad("truncated name")
	}
	if got := string(b[:nl]); got != name {
		return 0, nil, bad(fmt.Sprintf("state of %q loaded into %q", got, name))
	}
	b = b[nl:]
	t := binary.LittleEndian.Uint64(b)
	if int(b[8]) != nvec {
		return 0, nil, bad(fmt.Sprintf("%d vectors, want %d", b[8], nvec))
	}
	b = b[9:]
	vecs := make([][]float32, nvec)
	for i := range vecs {
		if len(b) < 8 {
			return 0, nil, bad("truncated vector length")
		}
		n := binary.LittleEndian.Uint64(b)
		b = b[8:]
		if n > uint64(len(b)/4) {
			return 0, nil, bad(fmt.Sprintf("vector of %d floats in %d bytes", n, len(b)))
		}
		if n > 0 {
			v := make([]float32, n)
			for j := range v {
				v[j] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*j:]))
			}
			vecs[i] = v
		}
		b = b[4*n:]
	}
	if len(b) != 0 {
		return 0, nil, bad(fmt.Sprintf("%d trailing bytes", len(b)))
	}
	return t, vecs, nil
}
