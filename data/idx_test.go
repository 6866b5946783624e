package data

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"testing"
)

func idxBytes(typ byte, dims []uint32, payload []byte) []byte {
	b := []byte{0, 0, typ, byte(len(dims))}
	for _, d := range dims {
		b = binary.BigEndian.AppendUint32(b, d)
	}
	return append(b, payload...)
}

func gz(b []byte) []byte {
	var buf bytes.Buffer
	w := gzip.NewWriter(&buf)
	w.Write(b)
	w.Close()
	return buf.Bytes()
}

func TestDecodeIDX(t *testing.T) {
	good := idxBytes(8, []uint32{2, 3}, []byte{1, 2, 3, 4, 5, 6})
	cases := []struct {
		name string
		in   []byte
		dims []int
		ok   bool
	}{
		{"plain", good, []int{2, 3}, true},
		{"gzip", gz(good), []int{2, 3}, true},
		{"labels-1d", idxBytes(8, []uint32{4}, []byte{9, 8, 7, 6}), []int{4}, true},
		{"empty-tensor", idxBytes(8, []uint32{0, 28, 28}, nil), []int{0, 28, 28}, true},
		{"empty-input", nil, nil, false},
		{"bad-magic", append([]byte{1}, good[1:]...), nil, false},
		{"float-type", idxBytes(0x0d, []uint32{1}, []byte{0, 0, 0, 0}), nil, false},
		{"zero-dims", idxBytes(8, nil, nil), nil, false},
		{"five-dims", idxBytes(8, []uint32{1, 1, 1, 1, 1}, []byte{0}), nil, false},
		{"truncated-header", good[:6], nil, false},
		{"truncated-payload", good[:len(good)-1], nil, false},
		{"trailing-byte", append(append([]byte(nil), good...), 0), nil, false},
		// 2^24 × 2^24 elements: rejected from the header, nothing allocated
		{"huge-claim", idxBytes(8, []uint32{1 << 24, 1 << 24}, []byte{1}), nil, false},
		// claims 1 GiB but carries 3 bytes: rejected after reading 3
		{"lying-size", idxBytes(8, []uint32{1 << 10, 1 << 10, 1 << 10}, []byte{1, 2, 3}), nil, false},
		{"corrupt-gzip", gz(good)[:12], nil, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := DecodeIDX(bytes.NewReader(c.in))
			if !c.ok {
				if !errors.Is(err, ErrFormat) {
					t.Fatalf("err = %v, want ErrFormat", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(got.Dims) != len(c.dims) {
				t.Fatalf("dims %v, want %v", got.Dims, c.dims)
			}
			for i := range c.dims {
				if got.Dims[i] != c.dims[i] {
					t.Fatalf("dims %v, want %v", got.Dims, c.dims)
				}
			}
		})
	}
}

func FuzzDecodeIDX(f *testing.F) {
	good := idxBytes(8, []uint32{2, 3}, []byte{1, 2, 3, 4, 5, 6})
	f.Add(good)
	f.Add(gz(good))
	f.Add(idxBytes(8, []uint32{3}, []byte{1, 2, 3}))
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := DecodeIDX(bytes.NewReader(b))
		if err != nil {
			return
		}
		n := 1
		for _, d := range got.Dims {
			n *= d
		}
		if n != len(got.Data) {
			t.Fatalf("dims %v but %d bytes", got.Dims, len(got.Data))
		}
	})
}
