package train

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
)

// ErrState reports a malformed or incompatible state blob.
var ErrState = errors.New("train: bad state blob")

// State blob, little endian, version 1:
//
//	"RTTS" | version u16 | model fingerprint [32] |
//	step u64 | data epoch u64 | data cursor u64 | data seed u64 |
//	parameter count u64 | parameters (float32) |
//	optimizer state length u64 | optimizer state |
//	scaler state length u64 | scaler state
const (
	stateMagic   = "RTTS"
	stateVersion = 1
	// Every length is checked against the bytes present before anything is
	// allocated.
	stateFixed = 4 + 2 + 32 + 4*8
)

// MarshalState serializes everything needed to continue training exactly
// where this trainer stands.
func (t *Trainer) MarshalState() ([]byte, error) {
	opt, err := t.cfg.Optimizer.MarshalBinary()
	if err != nil {
		return nil, fmt.Errorf("train: optimizer state: %w", err)
	}
	sc, err := t.cfg.LR.MarshalBinary()
	if err != nil {
		return nil, fmt.Errorf("train: scaler state: %w", err)
	}
	p := t.cfg.Model.Params()
	b := make([]byte, 0, stateFixed+8+4*len(p)+16+len(opt)+len(sc))
	b = append(b, stateMagic...)
	b = binary.LittleEndian.AppendUint16(b, stateVersion)
	fp := t.cfg.Model.Fingerprint()
	b = append(b, fp[:]...)
	for _, v := range []uint64{t.step, t.epoch, uint64(t.cursor), t.cfg.Seed, uint64(len(p))} {
		b = binary.LittleEndian.AppendUint64(b, v)
	}
	for _, v := range p {
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(v))
	}
	b = binary.LittleEndian.AppendUint64(b, uint64(len(opt)))
	b = append(b, opt...)
	b = binary.LittleEndian.AppendUint64(b, uint64(len(sc)))
	b = append(b, sc...)
	return b, nil
}

// UnmarshalState restores a state blob written by MarshalState of a trainer
// with the same model architecture and optimizer. The blob is validated
// completely before the trainer is changed.
func (t *Trainer) UnmarshalState(b []byte) error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: %s", ErrState, fmt.Sprintf(format, a...))
	}
	if len(b) < stateFixed+8 || string(b[:4]) != stateMagic {
		return bad("missing header")
	}
	if v := binary.LittleEndian.Uint16(b[4:]); v != stateVersion {
		return bad("version %d, want %d", v, stateVersion)
	}
	fp := t.cfg.Model.Fingerprint()
	if string(b[6:38]) != string(fp[:]) {
		return bad("model fingerprint %x, this model is %x", b[6:14], fp[:8])
	}
	u := func(i int) uint64 { return binary.LittleEndian.Uint64(b[38+8*i:]) }
	step, epoch, cursor, seed, np := u(0), u(1), u(2), u(3), u(4)
	p := t.cfg.Model.Params()
	if np != uint64(len(p)) {
		return bad("%d parameters, model has %d", np, len(p))
	}
	if cursor >= uint64(t.cfg.Train.Len()) {
		return bad("data cursor %d outside a data set of %d", cursor, t.cfg.Train.Len())
	}
	rest := b[stateFixed+8:]
	if uint64(len(rest)) < 4*np {
		return bad("truncated parameters")
	}
	params, rest := rest[:4*np], rest[4*np:]
	section := func() ([]byte, error) {
		if len(rest) < 8 {
			return nil, bad("truncated section length")
		}
		n := binary.LittleEndian.Uint64(rest)
		rest = rest[8:]
		if n > uint64(len(rest)) {
			return nil, bad("section of %d bytes, %d left", n, len(rest))
		}
		s := rest[:n]
		rest = rest[n:]
		return s, nil
	}
	opt, err := section()
	if err != nil {
		return err
	}
	sc, err := section()
	if err != nil {
		return err
	}
	if len(rest) != 0 {
		return bad("%d trailing bytes", len(rest))
	}
	// Decode the optional parts into scratch copies first, so a failure
	// leaves the trainer as it was.
	scaler := t.cfg.LR
	if err := scaler.UnmarshalBinary(sc); err != nil {
		return fmt.Errorf("%w: %w", ErrState, err)
	}
	prevOpt, err := t.cfg.Optimizer.MarshalBinary()
	if err != nil {
		return err
	}
	if err := t.cfg.Optimizer.UnmarshalBinary(opt); err != nil {
		return fmt.Errorf("%w: %w", ErrState, err)
	}
	if l := t.cfg.Optimizer.StateLen(); l != 0 && l != len(p) {
		_ = t.cfg.Optimizer.UnmarshalBinary(prevOpt) // it came from MarshalBinary
		return bad("optimizer state for %d parameters, model has %d", l, len(p))
	}
	for i := range p {
		p[i] = math.Float32frombits(binary.LittleEndian.Uint32(params[4*i:]))
	}
	t.cfg.LR = scaler
	t.step, t.epoch, t.cursor, t.cfg.Seed = step, epoch, int(cursor), seed
	t.order = nil
	return nil
}
