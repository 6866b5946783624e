package membership

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// ProtocolVersion is the version of the membership and control protocol this
// build speaks. Peers with another version are refused.
const ProtocolVersion uint8 = 1

// metaVersion is the version of the metadata encoding itself.
const metaVersion byte = 2

// MetaMaxSize bounds the encoded node metadata. memberlist allows 512 bytes
// and panics above; we stay well below so gossip packets stay small.
const MetaMaxSize = 256

// Field bounds, checked when encoding and when decoding.
const (
	maxIDLen          = 64
	maxAddrLen        = 64
	maxFingerprintLen = 64
)

// State is a node's lifecycle state as advertised in its metadata.
type State uint8

const (
	// StateJoining: the node is waiting to be admitted into an epoch.
	StateJoining State = iota + 1
	// StateActive: the node is a member of its current epoch.
	StateActive
	// StateLeaving: the node announced a graceful leave.
	StateLeaving
)

func (s State) String() string {
	switch s {
	case StateJoining:
		return "joining"
	case StateActive:
		return "active"
	case StateLeaving:
		return "leaving"
	}
	return fmt.Sprintf("state(%d)", uint8(s))
}

// Meta is the metadata every node gossips about itself.
type Meta struct {
	ID          string // node ID (also the memberlist node name)
	QUICAddr    string // data-plane address
	State       State
	Protocol    uint8  // ProtocolVersion of the node
	Fingerprint string // model fingerprint: peers must match exactly
	Epoch       uint64 // the node's committed epoch, 0 if none
	// Step is the number of steps applied to the state a joining node
	// holds (e.g. from a checkpoint): the first epoch syncs everyone from
	// the node with the most.
	Step uint64
}

// ErrMeta is wrapped by metadata encoding and decoding errors.
var ErrMeta = errors.New("membership: bad node metadata")

// ErrIncompatible is wrapped when a peer speaks another protocol version or
// trains another model.
var ErrIncompatible = errors.New("membership: incompatible peer")

// MarshalBinary encodes m compactly: a version byte, protocol, state, the
// epoch and step as uvarints and three length-prefixed strings.
func (m Meta) MarshalBinary() ([]byte, error) {
	if len(m.ID) == 0 || len(m.ID) > maxIDLen {
		return nil, fmt.Errorf("%w: node ID length %d not in 1..%d", ErrMeta, len(m.ID), maxIDLen)
	}
	if len(m.QUICAddr) > maxAddrLen {
		return nil, fmt.Errorf("%w: QUIC address length %d > %d", ErrMeta, len(m.QUICAddr), maxAddrLen)
	}
	if len(m.Fingerprint) > maxFingerprintLen {
		return nil, fmt.Errorf("%w: fingerprint length %d > %d", ErrMeta, len(m.Fingerprint), maxFingerprintLen)
	}
	b := make([]byte, 0, 16+len(m.ID)+len(m.QUICAddr)+len(m.Fingerprint))
	b = append(b, metaVersion, m.Protocol, byte(m.State))
	b = binary.AppendUvarint(b, m.Epoch)
	b = binary.AppendUvarint(b, m.Step)
	for _, s := range []string{m.ID, m.QUICAddr, m.Fingerprint} {
		b = append(b, byte(len(s)))
		b = append(b, s...)
	}
	if len(b) > MetaMaxSize {
		return nil, fmt.Errorf("%w: encoded size %d > %d", ErrMeta, len(b), MetaMaxSize)
	}
	return b, nil
}

// UnmarshalBinary decodes metadata; it never panics on bad bytes.
func (m *Meta) UnmarshalBinary(b []byte) error {
	if len(b) > MetaMaxSize {
		return fmt.Errorf("%w: size %d > %d", ErrMeta, len(b), MetaMaxSize)
	}
	if len(b) < 3 {
		return fmt.Errorf("%w: %d bytes, too short", ErrMeta, len(b))
	}
	if b[0] != metaVersion {
		return fmt.Errorf("%w: encoding version %d, want %d", ErrMeta, b[0], metaVersion)
	}
	var out Meta
	out.Protocol = b[1]
	out.State = State(b[2])
	if out.State < StateJoining || out.State > StateLeaving {
		return fmt.Errorf("%w: unknown state %d", ErrMeta, b[2])
	}
	b = b[3:]
	e, n := binary.Uvarint(b)
	if n <= 0 {
		return fmt.Errorf("%w: bad epoch varint", ErrMeta)
	}
	out.Epoch = e
	b = b[n:]
	st, n := binary.Uvarint(b)
	if n <= 0 {
		return fmt.Errorf("%w: bad step varint", ErrMeta)
	}
	out.Step = st
	b = b[n:]
	var fields [3]string
	limits := [3]int{maxIDLen, maxAddrLen, maxFingerprintLen}
	for i := range fields {
		if len(b) < 1 {
			return fmt.Errorf("%w: truncated field %d", ErrMeta, i)
		}
		l := int(b[0])
		if l > limits[i] || l > len(b)-1 {
			return fmt.Errorf("%w: field %d length %d out of bounds", ErrMeta, i, l)
		}
		fields[i] = string(b[1 : 1+l])
		b = b[1+l:]
	}
	if len(b) != 0 {
		return fmt.Errorf("%w: %d trailing bytes", ErrMeta, len(b))
	}
	if fields[0] == "" {
		return fmt.Errorf("%w: empty node ID", ErrMeta)
	}
	out.ID, out.QUICAddr, out.Fingerprint = fields[0], fields[1], fields[2]
	*m = out
	return nil
}

// compatible reports why a peer with metadata peer cannot train with a node
// whose own metadata is self, or nil if it can.
func compatible(self, peer Meta) error {
	if peer.Protocol != self.Protocol {
		return fmt.Errorf("%w: peer %s speaks protocol version %d, %s speaks %d",
			ErrIncompatible, peer.ID, peer.Protocol, self.ID, self.Protocol)
	}
	if peer.Fingerprint != self.Fingerprint {
		return fmt.Errorf("%w: peer %s trains model fingerprint %q, %s trains %q",
			ErrIncompatible, peer.ID, peer.Fingerprint, self.ID, self.Fingerprint)
	}
	return nil
}
