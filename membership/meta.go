package membership

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// ProtocolVersion is the version of the membership and control protocol this
// build speaks. Peers with another version are refused.
// Version 2: the agreement of package agree (Paxos rounds per base
// epoch) and its message encoding.
const ProtocolVersion uint8 = 2

// metaVersion is the version of the metadata encoding itself.
// Version 4: the data-plane settings (Meta.Plane).
const metaVersion byte = 4

// Metadata flags.
const (
	metaNoState  byte = 1 << iota // the node holds no training state yet
	metaAmnesiac                  // its epoch was learnt after it lost its durable state
)

// MetaMaxSize bounds the encoded node metadata. memberlist allows 512 bytes
// and panics above; we stay well below so gossip packets stay small.
const MetaMaxSize = 320

// Field bounds, checked when encoding and when decoding.
const (
	maxIDLen          = 64
	maxAddrLen        = 64
	maxFingerprintLen = 64
	maxPlaneLen       = 48
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
	// Plane names the data-plane settings every node must share (the
	// transport, its connections per peer, the chunk size): peers must
	// match exactly, so a mismatch is refused when a node joins instead
	// of failing every ring connection after it.
	Plane string
	// Epoch is the epoch the node runs (active), or the last it held
	// (joining: it waits to be admitted, or to re-form that epoch's
	// successor with a majority of its members); 0 if it never held one.
	Epoch uint64
	// Step is the number of steps applied to the state a joining node
	// holds (e.g. from a checkpoint): the first epoch syncs everyone from
	// the node with the most.
	Step uint64
	// NoState: a joining node holds no training state yet, so it cannot
	// be the source of a first epoch.
	NoState bool
	// Amnesiac: Epoch was learnt from a peer after the node lost its
	// durable agreement state (agree.HardState.Amnesiac): it does not
	// count toward a majority of that epoch.
	Amnesiac bool
}

// ErrMeta is wrapped by metadata encoding and decoding errors.
var ErrMeta = errors.New("membership: bad node metadata")

// ErrIncompatible is wrapped when a peer speaks another protocol version or
// trains another model.
var ErrIncompatible = errors.New("membership: incompatible peer")

// MarshalBinary encodes m compactly: a version byte, protocol, state,
// flags, the epoch and step as uvarints and four length-prefixed strings.
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
	if len(m.Plane) > maxPlaneLen {
		return nil, fmt.Errorf("%w: data-plane settings length %d > %d", ErrMeta, len(m.Plane), maxPlaneLen)
	}
	b := make([]byte, 0, 16+len(m.ID)+len(m.QUICAddr)+len(m.Fingerprint)+len(m.Plane))
	var flags byte
	if m.NoState {
		flags |= metaNoState
	}
	if m.Amnesiac {
		flags |= metaAmnesiac
	}
	b = append(b, metaVersion, m.Protocol, byte(m.State), flags)
	b = binary.AppendUvarint(b, m.Epoch)
	b = binary.AppendUvarint(b, m.Step)
	for _, s := range []string{m.ID, m.QUICAddr, m.Fingerprint, m.Plane} {
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
	if len(b) < 4 {
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
	if b[3]&^(metaNoState|metaAmnesiac) != 0 {
		return fmt.Errorf("%w: unknown flags %#x", ErrMeta, b[3])
	}
	out.NoState = b[3]&metaNoState != 0
	out.Amnesiac = b[3]&metaAmnesiac != 0
	b = b[4:]
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
	var fields [4]string
	limits := [4]int{maxIDLen, maxAddrLen, maxFingerprintLen, maxPlaneLen}
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
	out.ID, out.QUICAddr, out.Fingerprint, out.Plane = fields[0], fields[1], fields[2], fields[3]
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
	if peer.Plane != self.Plane {
		return fmt.Errorf("%w: peer %s moves gradients with %q, %s with %q: every node needs the same data-plane settings",
			ErrIncompatible, peer.ID, peer.Plane, self.ID, self.Plane)
	}
	return nil
}
