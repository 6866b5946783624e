// Package wire holds ringtrain's wire format: the protobuf messages
// (wire.proto, generated wire.pb.go) and the frame codec that puts them on a
// QUIC stream.
//
// A frame is a 4-byte big-endian length followed by that many bytes of one
// protobuf message. A data stream carries the messages of one tag, each a
// DataHeader frame followed by exactly DataHeader.Length raw payload bytes,
// and ends (FIN) between messages. Invariants:
//   - Every length read from the wire is checked against a hard bound before
//     anything is allocated or read: MaxHeaderSize for data headers,
//     MaxControlSize for control frames, the caller's payload limit for
//     payloads.
//   - Decoders never panic on any input (fuzzed) and reject messages that
//     are well-formed protobuf but meaningless (no body, unknown dtype or
//     flag bits, payload over the limit).
//
// Only transport/quic imports this package.
package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"google.golang.org/protobuf/proto"
)

// ProtocolVersion is sent in Hello; peers with another version are refused.
const ProtocolVersion = 2 // 2: a data stream carries many messages of one tag

// Frame bounds.
const (
	// PrefixLen is the size of a frame's length prefix.
	PrefixLen = 4
	// MaxHeaderSize bounds an encoded DataHeader.
	MaxHeaderSize = 4 << 10
	// MaxControlSize bounds an encoded Control message (an epoch proposal
	// for a few thousand members fits).
	MaxControlSize = 256 << 10
	// DefaultMaxPayload is the default bound on one message's payload.
	DefaultMaxPayload = 64 << 20
)

// Decoding errors.
var (
	// ErrFrameSize: a length prefix exceeds the bound for its frame kind.
	ErrFrameSize = errors.New("wire: frame length out of bounds")
	// ErrMalformed: the bytes are not a valid message of the expected kind.
	ErrMalformed = errors.New("wire: malformed message")
)

// unmarshalOpts: unknown fields from a newer peer are ignored.
func unmarshalOpts() proto.UnmarshalOptions { return proto.UnmarshalOptions{DiscardUnknown: true} }

// AppendFrame appends the frame of m (length prefix and body) to dst. It
// fails if the body is longer than max.
func AppendFrame(dst []byte, m proto.Message, max int) ([]byte, error) {
	start := len(dst)
	dst = append(dst, 0, 0, 0, 0)
	dst, err := proto.MarshalOptions{Deterministic: true}.MarshalAppend(dst, m)
	if err != nil {
		return dst[:start], fmt.Errorf("wire: marshal %T: %w", m, err)
	}
	n := len(dst) - start - PrefixLen
	if n > max {
		return dst[:start], fmt.Errorf("%w: %T is %d bytes, limit %d", ErrFrameSize, m, n, max)
	}
	binary.BigEndian.PutUint32(dst[start:], uint32(n))
	return dst, nil
}

// ReadFrame reads one frame from r and returns its body, which aliases buf.
// The length prefix is checked against max and len(buf) before the body is
// read. A clean end of stream before the first byte is io.EOF; one inside
// the frame is io.ErrUnexpectedEOF.
func ReadFrame(r io.Reader, buf []byte, max int) ([]byte, error) {
	var pfx [PrefixLen]byte
	if _, err := io.ReadFull(r, pfx[:]); err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(pfx[:])
	if uint64(n) > uint64(max) || uint64(n) > uint64(len(buf)) {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrFrameSize, n, min(max, len(buf)))
	}
	if _, err := io.ReadFull(r, buf[:n]); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	return buf[:n], nil
}

// ReadFrameGrow is ReadFrame for frames whose bound is large but whose
// usual size is small: *buf grows (up to max, after the length is checked)
// only when a frame needs it, so idle connections hold small buffers.
func ReadFrameGrow(r io.Reader, buf *[]byte, max int) ([]byte, error) {
	var pfx [PrefixLen]byte
	if _, err := io.ReadFull(r, pfx[:]); err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(pfx[:])
	if uint64(n) > uint64(max) {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrFrameSize, n, max)
	}
	if int(n) > len(*buf) {
		*buf = make([]byte, n)
	}
	if _, err := io.ReadFull(r, (*buf)[:n]); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	return (*buf)[:n], nil
}

// ReadDataHeader reads the next message header of a data stream (a frame
// holding a DataHeader, checked as DecodeDataHeader checks it). The Length
// payload bytes that follow are the caller's to read. A clean end of stream
// before the header is io.EOF: a data stream ends between messages. *buf
// grows as ReadFrameGrow's does, never beyond MaxHeaderSize.
func ReadDataHeader(r io.Reader, buf *[]byte, maxPayload uint64) (*DataHeader, error) {
	body, err := ReadFrameGrow(r, buf, MaxHeaderSize)
	if err != nil {
		return nil, err
	}
	return DecodeDataHeader(body, maxPayload)
}

// DecodeControl decodes a control frame body. It fails unless exactly one
// known body is set.
func DecodeControl(b []byte) (*Control, error) {
	if len(b) > MaxControlSize {
		return nil, fmt.Errorf("%w: control message of %d bytes", ErrFrameSize, len(b))
	}
	c := new(Control)
	if err := unmarshalOpts().Unmarshal(b, c); err != nil {
		return nil, fmt.Errorf("%w: control: %v", ErrMalformed, err)
	}
	if c.Body == nil {
		return nil, fmt.Errorf("%w: control message without a body", ErrMalformed)
	}
	return c, nil
}

// DecodeDataHeader decodes a data header and checks it: known dtype and
// flags, payload length at most maxPayload and a whole number of elements.
func DecodeDataHeader(b []byte, maxPayload uint64) (*DataHeader, error) {
	if len(b) > MaxHeaderSize {
		return nil, fmt.Errorf("%w: data header of %d bytes", ErrFrameSize, len(b))
	}
	h := new(DataHeader)
	if err := unmarshalOpts().Unmarshal(b, h); err != nil {
		return nil, fmt.Errorf("%w: data header: %v", ErrMalformed, err)
	}
	if err := CheckDataHeader(h, maxPayload); err != nil {
		return nil, err
	}
	return h, nil
}

// CheckDataHeader validates a decoded (or about to be sent) header.
func CheckDataHeader(h *DataHeader, maxPayload uint64) error {
	switch h.Dtype {
	case DType_DTYPE_BYTES:
	case DType_DTYPE_FLOAT32:
		if h.Length%4 != 0 {
			return fmt.Errorf("%w: float32 payload of %d bytes", ErrMalformed, h.Length)
		}
	default:
		return fmt.Errorf("%w: unknown dtype %d", ErrMalformed, h.Dtype)
	}
	if h.Flags&^uint32(DataFlag_DATA_FLAG_ABORT) != 0 {
		return fmt.Errorf("%w: unknown flag bits %#x", ErrMalformed, h.Flags)
	}
	if h.Length > maxPayload {
		return fmt.Errorf("%w: payload of %d bytes, limit %d", ErrFrameSize, h.Length, maxPayload)
	}
	if h.Flags&uint32(DataFlag_DATA_FLAG_ABORT) != 0 && h.Length != 0 {
		return fmt.Errorf("%w: abort header with %d payload bytes", ErrMalformed, h.Length)
	}
	return nil
}
