package membership

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/ringtrain/ringtrain/membership/agree"
	"github.com/ringtrain/ringtrain/transport"
)

// Control tags. All agreement messages share one mailbox tag (the
// protocol spans epochs: a newcomer has none yet, so the epoch travels
// inside the message); state sync uses a tag per epoch so a stale transfer
// can never be read as a new one.
func controlTag() transport.Tag { return transport.Tag{Epoch: 0, Op: transport.ControlOpBase} }

func stateTag(epoch uint64) transport.Tag {
	return transport.Tag{Epoch: epoch, Op: transport.ControlOpBase + 1}
}

// Wire bounds: every length read from the wire is checked against them
// before anything is allocated.
const (
	msgVersion = 2
	maxControl = 64 << 10 // bytes of one encoded control message
	maxMembers = 256      // entries of one ID list
	maxChunk   = 4 << 20  // bytes of one state chunk
	maxState   = 1 << 40  // bytes of one state blob
)

// knownFlags are the report flags this version defines.
const knownFlags = agree.FlagFailed | agree.FlagLeave | agree.FlagNoState | agree.FlagJoin | agree.FlagAll

// ErrWire is wrapped by control message decoding errors.
var ErrWire = errors.New("membership: malformed control message")

// marshalMsg encodes one agreement message (From and To are not encoded:
// the connection names the sender):
//
//	version, kind, flags (bytes)
//	epoch, base, seq, step (uvarints)
//	lost (ID list), ballot (uvarint N, ID), cands (ID list), acc ballot
//	value: 0, or 1 then epoch number, members, step, source, targets
//
// An ID is a uvarint length and bytes; a list is a uvarint count and IDs.
func marshalMsg(m agree.Msg) ([]byte, error) {
	if m.Kind == 0 || m.Kind > agree.Nack {
		return nil, fmt.Errorf("membership: encode: unknown message kind %d", m.Kind)
	}
	w := writer{b: make([]byte, 0, 64)}
	w.b = append(w.b, msgVersion, byte(m.Kind), m.Flags)
	for _, v := range []uint64{m.Epoch, m.Base, m.Seq, m.Step} {
		w.b = binary.AppendUvarint(w.b, v)
	}
	w.list(m.Lost)
	w.ballot(m.Ballot)
	w.list(m.Cands)
	w.ballot(m.AccBallot)
	if v := m.Value; v == nil {
		w.b = append(w.b, 0)
	} else {
		w.b = append(w.b, 1)
		w.b = binary.AppendUvarint(w.b, v.Epoch.Number)
		w.list(v.Epoch.Members)
		w.b = binary.AppendUvarint(w.b, v.Step)
		w.id(v.Source, 0)
		w.list(v.Targets)
	}
	if w.err == nil && len(w.b) > maxControl {
		w.err = fmt.Errorf("%d bytes > %d", len(w.b), maxControl)
	}
	if w.err != nil {
		return nil, fmt.Errorf("membership: encode %s: %w", m.Kind, w.err)
	}
	return w.b, nil
}

// writer encodes with the decoder's bounds; the first error sticks.
type writer struct {
	b   []byte
	err error
}

func (w *writer) id(s string, min int) {
	if len(s) < min || len(s) > maxIDLen {
		if w.err == nil {
			w.err = fmt.Errorf("ID %q: length not in %d..%d", s, min, maxIDLen)
		}
		return
	}
	w.b = binary.AppendUvarint(w.b, uint64(len(s)))
	w.b = append(w.b, s...)
}

func (w *writer) list(l []string) {
	if len(l) > maxMembers {
		if w.err == nil {
			w.err = fmt.Errorf("list of %d IDs > %d", len(l), maxMembers)
		}
		return
	}
	w.b = binary.AppendUvarint(w.b, uint64(len(l)))
	for _, s := range l {
		w.id(s, 1)
	}
}

func (w *writer) ballot(b agree.Ballot) {
	w.b = binary.AppendUvarint(w.b, b.N)
	w.id(b.By, 0)
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

func (r *reader) byte(what string) byte {
	if r.err != nil {
		return 0
	}
	if len(r.b) == 0 {
		r.fail("truncated before %s", what)
		return 0
	}
	v := r.b[0]
	r.b = r.b[1:]
	return v
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

func (r *reader) id(what string, min int) string {
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
	// Each ID takes at least two bytes: bound the count by what is left
	// before allocating.
	if n > maxMembers || 2*n > uint64(len(r.b)) {
		r.fail("%s count %d out of bounds", what, n)
		return nil
	}
	if n == 0 {
		return nil
	}
	out := make([]string, n)
	for i := range out {
		out[i] = r.id(what, 1)
	}
	return out
}

func (r *reader) ballot(what string) agree.Ballot {
	return agree.Ballot{N: r.uvarint(what), By: r.id(what, 0)}
}

// unmarshalMsg decodes one agreement message; it never panics on bad
// bytes, and the caller sets From (and To) from the connection.
func unmarshalMsg(b []byte) (agree.Msg, error) {
	if len(b) > maxControl {
		return agree.Msg{}, fmt.Errorf("%w: %d bytes > %d", ErrWire, len(b), maxControl)
	}
	r := &reader{b: b}
	if v := r.byte("version"); r.err == nil && v != msgVersion {
		return agree.Msg{}, fmt.Errorf("%w: version %d, want %d", ErrWire, v, msgVersion)
	}
	var m agree.Msg
	m.Kind = agree.Kind(r.byte("kind"))
	if r.err == nil && (m.Kind == 0 || m.Kind > agree.Nack) {
		return agree.Msg{}, fmt.Errorf("%w: unknown kind %d", ErrWire, m.Kind)
	}
	m.Flags = r.byte("flags")
	if r.err == nil && m.Flags&^knownFlags != 0 {
		return agree.Msg{}, fmt.Errorf("%w: unknown flags %#x", ErrWire, m.Flags)
	}
	m.Epoch = r.uvarint("epoch")
	m.Base = r.uvarint("base")
	m.Seq = r.uvarint("seq")
	m.Step = r.uvarint("step")
	m.Lost = r.list("lost")
	m.Ballot = r.ballot("ballot")
	m.Cands = r.list("candidates")
	m.AccBallot = r.ballot("accepted ballot")
	switch r.byte("value") {
	case 0:
	case 1:
		v := &agree.Value{}
		v.Epoch.Number = r.uvarint("value epoch")
		v.Epoch.Members = r.list("value members")
		v.Step = r.uvarint("value step")
		v.Source = r.id("value source", 0)
		v.Targets = r.list("value targets")
		m.Value = v
	default:
		r.fail("bad value marker")
	}
	if r.err == nil && len(r.b) != 0 {
		r.fail("%d trailing bytes", len(r.b))
	}
	if r.err != nil {
		return agree.Msg{}, r.err
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
