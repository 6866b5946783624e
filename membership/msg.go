package membership

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/ringtrain/ringtrain/transport"
)

// Control tags. All control messages share one mailbox tag (the protocol
// spans epochs: a newcomer has none yet, so the epoch travels inside the
// message); state sync uses a tag per epoch so a stale transfer can never
// be read as a new one.
func controlTag() transport.Tag { return transport.Tag{Epoch: 0, Op: transport.ControlOpBase} }

func stateTag(epoch uint64) transport.Tag {
	return transport.Tag{Epoch: epoch, Op: transport.ControlOpBase + 1}
}

// Wire bounds: every length read from the wire is checked against them
// before anything is allocated.
const (
	msgVersion = 1
	maxControl = 32 << 10 // bytes of one encoded control message
	maxMembers = 256      // entries of one member list
	maxChunk   = 4 << 20  // bytes of one state chunk
	maxState   = 1 << 40  // bytes of one state blob
)

type kind uint8

const (
	kindReport   kind = iota + 1 // member → coordinator at a step boundary
	kindPropose                  // coordinator → members of the proposed epoch
	kindAck                      // member → proposer (flagOK or a refusal)
	kindCommit                   // proposer → members and reporters
	kindContinue                 // coordinator → members: no change
	kindAbort                    // proposer withdraws a proposal
	kindMax
)

func (k kind) String() string {
	switch k {
	case kindReport:
		return "report"
	case kindPropose:
		return "propose"
	case kindAck:
		return "ack"
	case kindCommit:
		return "commit"
	case kindContinue:
		return "continue"
	case kindAbort:
		return "abort"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// Flags.
const (
	flagFailed  uint8 = 1 << iota // report: the step failed
	flagLeave                     // report: the member leaves gracefully
	flagOK                        // ack: proposal accepted
	flagNoState                   // report: the member holds no state yet
	flagAll     = flagFailed | flagLeave | flagOK | flagNoState
)

// msg is one control message. Field meaning depends on Kind:
//
//	report:   Epoch = committed epoch, Promised = highest promised number,
//	          Step = completed steps, Seq = the reporter's boundary count,
//	          Lost = peers the failed step lost.
//	propose/commit: Epoch = proposed number, Base = the epoch it replaces,
//	          Proposer, Members = new member list (ring order), Step = step
//	          it starts from, Source = the member that sends state,
//	          Targets = indices of members that receive it.
//	ack:      Epoch = proposal number, Proposer = proposer; without flagOK,
//	          Promised/Source name the proposal already promised and Base
//	          is the refuser's epoch.
//	continue: Epoch = the unchanged epoch, Seq = the report it answers.
//	abort:    Epoch = proposal number, Proposer.
type msg struct {
	Kind     kind
	Flags    uint8
	Epoch    uint64
	Promised uint64
	Step     uint64
	Seq      uint64
	Base     uint64
	Proposer string
	Source   string
	Members  []string
	Lost     []string
	Targets  []uint32

	From string // set by the receiver from the connection, never encoded
}

// ErrWire is wrapped by control message decoding errors.
var ErrWire = errors.New("membership: malformed control message")

func appendStr(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func (m *msg) marshal() ([]byte, error) {
	if m.Kind == 0 || m.Kind >= kindMax {
		return nil, fmt.Errorf("membership: encode: unknown kind %d", m.Kind)
	}
	if len(m.Members) > maxMembers || len(m.Lost) > maxMembers || len(m.Targets) > maxMembers {
		return nil, fmt.Errorf("membership: encode %s: list longer than %d", m.Kind, maxMembers)
	}
	b := make([]byte, 0, 64)
	b = append(b, msgVersion, byte(m.Kind), m.Flags)
	b = binary.AppendUvarint(b, m.Epoch)
	b = binary.AppendUvarint(b, m.Promised)
	b = binary.AppendUvarint(b, m.Step)
	b = binary.AppendUvarint(b, m.Seq)
	b = binary.AppendUvarint(b, m.Base)
	for _, s := range []string{m.Proposer, m.Source} {
		if len(s) > maxIDLen {
			return nil, fmt.Errorf("membership: encode %s: ID %q too long", m.Kind, s)
		}
		b = appendStr(b, s)
	}
	for _, l := range [][]string{m.Members, m.Lost} {
		b = binary.AppendUvarint(b, uint64(len(l)))
		for _, s := range l {
			if len(s) == 0 || len(s) > maxIDLen {
				return nil, fmt.Errorf("membership: encode %s: ID %q length not in 1..%d", m.Kind, s, maxIDLen)
			}
			b = appendStr(b, s)
		}
	}
	b = binary.AppendUvarint(b, uint64(len(m.Targets)))
	for _, t := range m.Targets {
		if int(t) >= len(m.Members) {
			return nil, fmt.Errorf("membership: encode %s: target index %d out of %d members", m.Kind, t, len(m.Members))
		}
		b = binary.AppendUvarint(b, uint64(t))
	}
	if len(b) > maxControl {
		return nil, fmt.Errorf("membership: encode %s: %d bytes > %d", m.Kind, len(b), maxControl)
	}
	return b, nil
}

// reader decodes with bounds checks; the first error sticks.
type reader struct {
	b   []byte
	err error
}

func (r *reader) fail(format string, a ...any) {
	if r.err == nil {
		r.err = fmt.Errorf("%w: %s", ErrWire, fmt.Sprintf(format, a...))
	}
}

func (r *reader) uvarint(what string) uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.fail("bad varint for %s", what)
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) str(what string, min int) string {
	l := r.uvarint(what)
	if r.err != nil {
		return ""
	}
	if l < uint64(min) || l > maxIDLen || l > uint64(len(r.b)) {
		r.fail("%s length %d out of bounds", what, l)
		return ""
	}
	s := string(r.b[:l])
	r.b = r.b[l:]
	return s
}

func (r *reader) list(what string) []string {
	n := r.uvarint(what)
	if r.err != nil {
		return nil
	}
	if n > maxMembers || n > uint64(len(r.b)) {
		r.fail("%s count %d out of bounds", what, n)
		return nil
	}
	if n == 0 {
		return nil
	}
	out := make([]string, n)
	for i := range out {
		out[i] = r.str(what, 1)
	}
	return out
}

func unmarshalMsg(b []byte) (*msg, error) {
	if len(b) > maxControl {
		return nil, fmt.Errorf("%w: %d bytes > %d", ErrWire, len(b), maxControl)
	}
	if len(b) < 3 {
		return nil, fmt.Errorf("%w: %d bytes, too short", ErrWire, len(b))
	}
	if b[0] != msgVersion {
		return nil, fmt.Errorf("%w: version %d, want %d", ErrWire, b[0], msgVersion)
	}
	m := &msg{Kind: kind(b[1]), Flags: b[2]}
	if m.Kind == 0 || m.Kind >= kindMax {
		return nil, fmt.Errorf("%w: unknown kind %d", ErrWire, b[1])
	}
	if m.Flags&^flagAll != 0 {
		return nil, fmt.Errorf("%w: unknown flags %#x", ErrWire, m.Flags)
	}
	r := &reader{b: b[3:]}
	m.Epoch = r.uvarint("epoch")
	m.Promised = r.uvarint("promised")
	m.Step = r.uvarint("step")
	m.Seq = r.uvarint("seq")
	m.Base = r.uvarint("base")
	m.Proposer = r.str("proposer", 0)
	m.Source = r.str("source", 0)
	m.Members = r.list("members")
	m.Lost = r.list("lost")
	nt := r.uvarint("targets")
	if r.err == nil && (nt > uint64(len(m.Members)) || nt > uint64(len(r.b))) {
		r.fail("target count %d out of bounds", nt)
	}
	if r.err == nil && nt > 0 {
		m.Targets = make([]uint32, nt)
		for i := range m.Targets {
			t := r.uvarint("target")
			if r.err == nil && t >= uint64(len(m.Members)) {
				r.fail("target index %d out of %d members", t, len(m.Members))
			}
			m.Targets[i] = uint32(t)
		}
	}
	if r.err == nil && len(r.b) != 0 {
		r.fail("%d trailing bytes", len(r.b))
	}
	if r.err != nil {
		return nil, r.err
	}
	return m, nil
}

// chunkHeader precedes every state chunk: the total state size and the
// offset of this chunk.
const chunkHeader = 16

func putChunkHeader(b []byte, total, off uint64) {
	binary.LittleEndian.PutUint64(b[0:8], total)
	binary.LittleEndian.PutUint64(b[8:16], off)
}

func parseChunkHeader(b []byte) (total, off uint64, err error) {
	if len(b) < chunkHeader {
		return 0, 0, fmt.Errorf("%w: state chunk of %d bytes has no header", ErrWire, len(b))
	}
	total = binary.LittleEndian.Uint64(b[0:8])
	off = binary.LittleEndian.Uint64(b[8:16])
	n := uint64(len(b) - chunkHeader)
	if total > maxState || off > total || n > total-off {
		return 0, 0, fmt.Errorf("%w: state chunk total %d offset %d length %d out of bounds", ErrWire, total, off, n)
	}
	return total, off, nil
}
