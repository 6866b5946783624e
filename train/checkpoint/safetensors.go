// Package checkpoint reads and writes checkpoints in the safetensors format
// (an 8-byte little-endian header length, a JSON header naming each tensor's
// dtype, shape and byte range, then the raw little-endian data), so that
// Python's safetensors, or any reader of that format, can load the weights.
//
// Invariants:
//   - Writes are atomic: a temporary file in the same directory, fsync,
//     rename, fsync of the directory. A crash leaves the previous file intact.
//   - Decoding never trusts the file: the header length, every offset and
//     every shape are checked against the file size before use.
package checkpoint

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
)

// MaxHeader bounds the JSON header (the format's own reference reader uses
// 100 MB).
const MaxHeader = 100 << 20

// Tensor is one named tensor. Data holds the little-endian bytes.
type Tensor struct {
	Name  string
	DType string // "F32", "F64", "I64", "U8", ...
	Shape []int
	Data  []byte
}

// dtypeSize is the element size of the dtypes this package accepts.
func dtypeSize(d string) (int, bool) {
	switch d {
	case "U8", "I8", "BOOL":
		return 1, true
	case "F16", "BF16", "I16", "U16":
		return 2, true
	case "F32", "I32", "U32":
		return 4, true
	case "F64", "I64", "U64":
		return 8, true
	}
	return 0, false
}

type entry struct {
	DType       string   `json:"dtype"`
	Shape       []int    `json:"shape"`
	DataOffsets [2]int64 `json:"data_offsets"`
}

// ErrFormat is wrapped by every decoding error.
var ErrFormat = errors.New("checkpoint: not a valid safetensors file")

func numel(shape []int) (int64, bool) {
	n := int64(1)
	for _, d := range shape {
		if d < 0 || (d > 0 && n > math.MaxInt32*int64(1<<20)/int64(d)) {
			return 0, false
		}
		n *= int64(d)
	}
	return n, true
}

// Encode returns the safetensors encoding of tensors (in the given order)
// with string metadata.
func Encode(tensors []Tensor, meta map[string]string) ([]byte, error) {
	hdr := make(map[string]any, len(tensors)+1)
	if len(meta) > 0 {
		hdr["__metadata__"] = meta
	}
	var off int64
	for _, t := range tensors {
		if t.Name == "" || t.Name == "__metadata__" {
			return nil, fmt.Errorf("checkpoint: invalid tensor name %q", t.Name)
		}
		if _, dup := hdr[t.Name]; dup {
			return nil, fmt.Errorf("checkpoint: duplicate tensor %q", t.Name)
		}
		es, ok := dtypeSize(t.DType)
		if !ok {
			return nil, fmt.Errorf("checkpoint: tensor %q: unknown dtype %q", t.Name, t.DType)
		}
		n, ok := numel(t.Shape)
		if !ok || n*int64(es) != int64(len(t.Data)) {
			return nil, fmt.Errorf("checkpoint: tensor %q: shape %v of %s needs %d bytes, has %d", t.Name, t.Shape, t.DType, n*int64(es), len(t.Data))
		}
		hdr[t.Name] = entry{DType: t.DType, Shape: t.Shape, DataOffsets: [2]int64{off, off + int64(len(t.Data))}}
		off += int64(len(t.Data))
	}
	js, err := json.Marshal(hdr)
	if err != nil {
		return nil, fmt.Errorf("checkpoint: header: %w", err)
	}
	// Pad the header with spaces so the data starts 8-byte aligned.
	pad := (8 - len(js)%8) % 8
	js = append(js, bytes.Repeat([]byte(" "), pad)...)
	out := make([]byte, 8, 8+len(js)+int(off))
	binary.LittleEndian.PutUint64(out, uint64(len(js)))
	out = append(out, js...)
	for _, t := range tensors {
		out = append(out, t.Data...)
	}
	return out, nil
}

// Decode parses a safetensors file. Tensors come back in data order and
// alias b.
func Decode(b []byte) ([]Tensor, map[string]string, error) {
	if len(b) < 8 {
		return nil, nil, fmt.Errorf("%w: %d bytes, shorter than the header length", ErrFormat, len(b))
	}
	hl := binary.LittleEndian.Uint64(b)
	if hl > MaxHeader || hl > uint64(len(b)-8) {
		return nil, nil, fmt.Errorf("%w: header length %d exceeds the file (%d bytes) or the %d-byte limit", ErrFormat, hl, len(b), MaxHeader)
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(b[8:8+hl], &raw); err != nil {
		return nil, nil, fmt.Errorf("%w: header: %v", ErrFormat, err)
	}
	data := b[8+hl:]
	var meta map[string]string
	var ts []Tensor
	offs := make(map[string][2]int64, len(raw))
	for name, msg := range raw {
		if name == "__metadata__" {
			if err := json.Unmarshal(msg, &meta); err != nil {
				return nil, nil, fmt.Errorf("%w: metadata: %v", ErrFormat, err)
			}
			continue
		}
		var e entry
		if err := json.Unmarshal(msg, &e); err != nil {
			return nil, nil, fmt.Errorf("%w: tensor %q: %v", ErrFormat, name, err)
		}
		es, ok := dtypeSize(e.DType)
		if !ok {
			return nil, nil, fmt.Errorf("%w: tensor %q: unknown dtype %q", ErrFormat, name, e.DType)
		}
		n, ok := numel(e.Shape)
		lo, hi := e.DataOffsets[0], e.DataOffsets[1]
		if !ok || lo < 0 || hi < lo || hi > int64(len(data)) || hi-lo != n*int64(es) {
			return nil, nil, fmt.Errorf("%w: tensor %q: offsets %v for shape %v of %s in %d data bytes", ErrFormat, name, e.DataOffsets, e.Shape, e.DType, len(data))
		}
		offs[name] = e.DataOffsets
		ts = append(ts, Tensor{Name: name, DType: e.DType, Shape: e.Shape, Data: data[lo:hi:hi]})
	}
	slices.SortFunc(ts, func(a, b Tensor) int {
		if c := int(offs[a.Name][0] - offs[b.Name][0]); c != 0 {
			return c
		}
		return int(offs[a.Name][1] - offs[b.Name][1])
	})
	// The format requires the tensors to tile the data exactly.
	var end int64
	for _, t := range ts {
		o := offs[t.Name]
		if o[0] != end {
			return nil, nil, fmt.Errorf("%w: tensor %q starts at %d, previous ends at %d", ErrFormat, t.Name, o[0], end)
		}
		end = o[1]
	}
	if end != int64(len(data)) {
		return nil, nil, fmt.Errorf("%w: tensors cover %d of %d data bytes", ErrFormat, end, len(data))
	}
	return ts, meta, nil
}

// F32 wraps a float32 slice as a tensor (copying it to little-endian bytes).
func F32(name string, shape []int, v []float32) Tensor {
	b := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(x))
	}
	return Tensor{Name: name, DType: "F32", Shape: shape, Data: b}
}

// Floats decodes an F32 tensor.
func (t Tensor) Floats() ([]float32, error) {
	if t.DType != "F32" {
		return nil, fmt.Errorf("checkpoint: tensor %q is %s, not F32", t.Name, t.DType)
	}
	v := make([]float32, len(t.Data)/4)
	for i := range v {
		v[i] = math.Float32frombits(binary.LittleEndian.Uint32(t.Data[4*i:]))
	}
	return v, nil
}

// MetaInt reads an integer metadata value.
func MetaInt(meta map[string]string, key string) (int64, error) {
	v, ok := meta[key]
	if !ok {
		return 0, fmt.Errorf("checkpoint: metadata %q missing", key)
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("checkpoint: metadata %q: %w", key, err)
	}
	return n, nil
}
