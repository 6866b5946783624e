package data

import (
	"bufio"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// ErrFormat reports a malformed IDX file.
var ErrFormat = errors.New("data: malformed IDX file")

// Limits on IDX headers: generous for MNIST-like data sets, small enough
// that a hostile header cannot demand an absurd buffer.
const (
	maxDims     = 4
	maxDimLen   = 1 << 24
	maxIDXBytes = 1 << 30
	idxUByte    = 0x08
)

// IDX is a decoded IDX tensor of unsigned bytes.
type IDX struct {
	Dims []int
	Data []byte // len = product of Dims
}

// DecodeIDX reads one IDX tensor of unsigned bytes from r, gunzipping it
// first when it starts with the gzip magic. It reads exactly the bytes the
// header announces and rejects missing or trailing data.
func DecodeIDX(r io.Reader) (*IDX, error) {
	br := bufio.NewReader(r)
	if magic, err := br.Peek(2); err == nil && magic[0] == 0x1f && magic[1] == 0x8b {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, fmt.Errorf("%w: gzip: %v", ErrFormat, err)
		}
		defer zr.Close()
		br = bufio.NewReader(zr)
	}
	var hdr [4]byte
	if _, err := io.ReadFull(br, hdr[:]); err != nil {
		return nil, fmt.Errorf("%w: header: %v", ErrFormat, err)
	}
	if hdr[0] != 0 || hdr[1] != 0 {
		return nil, fmt.Errorf("%w: magic %x", ErrFormat, hdr)
	}
	if hdr[2] != idxUByte {
		return nil, fmt.Errorf("%w: element type 0x%02x, only unsigned bytes (0x08) supported", ErrFormat, hdr[2])
	}
	nd := int(hdr[3])
	if nd < 1 || nd > maxDims {
		return nil, fmt.Errorf("%w: %d dimensions", ErrFormat, nd)
	}
	dims := make([]int, nd)
	total := 1
	for i := range dims {
		var b [4]byte
		if _, err := io.ReadFull(br, b[:]); err != nil {
			return nil, fmt.Errorf("%w: dimension %d: %v", ErrFormat, i, err)
		}
		d := binary.BigEndian.Uint32(b[:])
		if d > maxDimLen {
			return nil, fmt.Errorf("%w: dimension %d is %d", ErrFormat, i, d)
		}
		dims[i] = int(d)
		total *= int(d)
		if total > maxIDXBytes {
			return nil, fmt.Errorf("%w: %v elements exceed %d", ErrFormat, dims[:i+1], maxIDXBytes)
		}
	}
	// ReadAll grows with the bytes that really arrive, so a header that
	// lies about the size cannot make us allocate more than the input.
	data, err := io.ReadAll(io.LimitReader(br, int64(total)))
	if err != nil {
		return nil, fmt.Errorf("%w: payload: %v", ErrFormat, err)
	}
	if len(data) != total {
		return nil, fmt.Errorf("%w: %d payload bytes, header says %d", ErrFormat, len(data), total)
	}
	if _, err := br.ReadByte(); err != io.EOF {
		return nil, fmt.Errorf("%w: trailing bytes after %d elements", ErrFormat, total)
	}
	return &IDX{Dims: dims, Data: data}, nil
}
