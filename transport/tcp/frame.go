package tcp

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/ringtrain/ringtrain/transport"
)

// A frame is a fixed header followed by length payload bytes (for the kinds
// that carry one):
//
//	kind u8 | epoch u64 | op u64 | length u32      (big endian, 21 bytes)
//
// epoch and op are the tag the frame belongs to (zero for connection-level
// kinds). length is the payload size, except for kindBegin (the message's
// total payload size, sent in the kindData frames that follow) and
// kindCredit (the bytes of credit returned), which carry no payload.
const headerLen = 21

type kind uint8

const (
	kindHello   kind = 1  // dialer → acceptor: helloMsg payload
	kindAck     kind = 2  // acceptor → dialer: ackMsg payload
	kindBegin   kind = 3  // a message of length bytes starts on the tag
	kindData    kind = 4  // length payload bytes of the tag's current message
	kindCancel  kind = 5  // the sender gave up the tag's current message: drop it
	kindAbort   kind = 6  // the tag is aborted; payload is the reason
	kindRefuse  kind = 7  // the receiver refuses the tag's epoch
	kindCredit  kind = 8  // the receiver consumed length bytes of the tag
	kindGoodbye kind = 9  // the sender closes: nothing follows
	kindIdle    kind = 10 // the sender closes the idle connection (not a loss): nothing follows
)

func (k kind) String() string {
	switch k {
	case kindHello:
		return "hello"
	case kindAck:
		return "ack"
	case kindBegin:
		return "begin"
	case kindData:
		return "data"
	case kindCancel:
		return "cancel"
	case kindAbort:
		return "abort"
	case kindRefuse:
		return "refuse"
	case kindCredit:
		return "credit"
	case kindGoodbye:
		return "goodbye"
	case kindIdle:
		return "idle"
	}
	return fmt.Sprintf("kind %d", uint8(k))
}

// Limits on what a frame may claim; checked before anything is allocated.
const (
	// maxSubFrame bounds one kindData frame: large messages are cut into
	// sub-frames so that the tags sharing the connection interleave, and
	// the receiver never holds more than one unvalidated frame.
	maxSubFrame = 256 << 10
	// maxControlPayload bounds an abort frame's reason (stored truncated
	// to transport.MaxReasonLen).
	maxControlPayload = 64 << 10
	// maxHelloLen bounds the handshake frames.
	maxHelloLen = 512
	// maxIDLen bounds a node ID in a hello.
	maxIDLen = 255
	// maxMessageLimit is the largest Config.MaxMessage (length is u32).
	maxMessageLimit = 1<<31 - 1
)

// header is a decoded frame header.
type header struct {
	kind   kind
	tag    transport.Tag
	length uint32
}

func appendHeader(b []byte, h header) []byte {
	b = append(b, byte(h.kind))
	b = binary.BigEndian.AppendUint64(b, h.tag.Epoch)
	b = binary.BigEndian.AppendUint64(b, h.tag.Op)
	return binary.BigEndian.AppendUint32(b, h.length)
}

// decodeHeader decodes and bounds one header: a header that fails here
// breaks the protocol, and the connection is closed.
func decodeHeader(b *[headerLen]byte, maxMessage int) (header, error) {
	h := header{
		kind:   kind(b[0]),
		tag:    transport.Tag{Epoch: binary.BigEndian.Uint64(b[1:9]), Op: binary.BigEndian.Uint64(b[9:17])},
		length: binary.BigEndian.Uint32(b[17:21]),
	}
	n := int64(h.length)
	var ok bool
	switch h.kind {
	case kindHello, kindAck:
		ok = n <= maxHelloLen
	case kindBegin:
		ok = n <= int64(maxMessage)
	case kindData:
		ok = n >= 1 && n <= maxSubFrame
	case kindCancel, kindRefuse, kindGoodbye, kindIdle:
		ok = n == 0
	case kindAbort:
		ok = n <= maxControlPayload
	case kindCredit:
		ok = n >= 1
	default:
		return h, fmt.Errorf("%w: unknown frame %s", transport.ErrProtocol, h.kind)
	}
	if !ok {
		return h, fmt.Errorf("%w: %s frame of %s with length %d out of bounds", transport.ErrProtocol, h.kind, h.tag, n)
	}
	return h, nil
}

// helloMsg is the dialer's first frame after the TLS handshake. Who the
// dialer is comes from its certificate; the hello says whom it meant to
// reach, which process (incarnation) it is, and which lane of which bundle
// this connection is (lanes.go): lane 0 is the bundle's first connection,
// the one the acceptor answers with an ack once all lanes have arrived.
type helloMsg struct {
	version     uint16
	incarnation uint64
	epoch       uint64
	lanes       uint8  // connections in the bundle (Config.Lanes), ≥ 1
	lane        uint8  // this connection's index, < lanes
	bundle      uint64 // random, the same on every lane of one bundle
	to          string
}

// ackMsg answers a hello.
type ackMsg struct {
	accepted    bool
	incarnation uint64
	reason      string // why not accepted
}

// protocolVersion is carried in every hello; peers refuse other versions.
// Version 2 added kindIdle, version 3 lanes (the hello's lanes, lane and
// bundle fields).
const protocolVersion = 3

var errShortPayload = errors.New("payload too short")

func (m helloMsg) appendTo(b []byte) []byte {
	b = binary.BigEndian.AppendUint16(b, m.version)
	b = binary.BigEndian.AppendUint64(b, m.incarnation)
	b = binary.BigEndian.AppendUint64(b, m.epoch)
	b = append(b, m.lanes, m.lane)
	b = binary.BigEndian.AppendUint64(b, m.bundle)
	b = append(b, byte(len(m.to)))
	return append(b, m.to...)
}

// helloFixed is the hello's size without the node ID.
const helloFixed = 29

// decodeHello decodes a hello. One of another protocol version decodes to
// just its version (no error), so the acceptor refuses it by saying which
// versions differ rather than that its layout is wrong.
func decodeHello(p []byte) (helloMsg, error) {
	var m helloMsg
	if len(p) < 2 {
		return m, fmt.Errorf("%w: hello: %v", transport.ErrProtocol, errShortPayload)
	}
	if m.version = binary.BigEndian.Uint16(p); m.version != protocolVersion {
		return m, nil
	}
	if len(p) < helloFixed {
		return m, fmt.Errorf("%w: hello: %v", transport.ErrProtocol, errShortPayload)
	}
	m.incarnation = binary.BigEndian.Uint64(p[2:])
	m.epoch = binary.BigEndian.Uint64(p[10:])
	m.lanes, m.lane = p[18], p[19]
	m.bundle = binary.BigEndian.Uint64(p[20:])
	n := int(p[28])
	if len(p) != helloFixed+n {
		return m, fmt.Errorf("%w: hello: node ID of %d bytes in a payload of %d", transport.ErrProtocol, n, len(p))
	}
	if m.lanes == 0 || m.lane >= m.lanes {
		return m, fmt.Errorf("%w: hello: lane %d of %d", transport.ErrProtocol, m.lane, m.lanes)
	}
	m.to = string(p[helloFixed:])
	return m, nil
}

func (m ackMsg) appendTo(b []byte) []byte {
	acc := byte(0)
	if m.accepted {
		acc = 1
	}
	b = append(b, acc)
	b = binary.BigEndian.AppendUint64(b, m.incarnation)
	r := m.reason
	if len(r) > maxHelloLen-11 {
		r = r[:maxHelloLen-11]
	}
	b = binary.BigEndian.AppendUint16(b, uint16(len(r)))
	return append(b, r...)
}

func decodeAck(p []byte) (ackMsg, error) {
	var m ackMsg
	if len(p) < 11 || p[0] > 1 {
		return m, fmt.Errorf("%w: hello ack of %d bytes", transport.ErrProtocol, len(p))
	}
	m.accepted = p[0] == 1
	m.incarnation = binary.BigEndian.Uint64(p[1:])
	n := int(binary.BigEndian.Uint16(p[9:]))
	if len(p) != 11+n {
		return m, fmt.Errorf("%w: hello ack: reason of %d bytes in a payload of %d", transport.ErrProtocol, n, len(p))
	}
	m.reason = string(p[11:])
	return m, nil
}
