package membership

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/ringtrain/ringtrain/membership/agree"
)

// ErrHardState marks durable agreement state that cannot be decoded: a
// node must not start from it (its promises would be lost silently).
var ErrHardState = errors.New("membership: bad agreement state")

// hardStateVersion is the version of EncodeHardState's format.
const hardStateVersion = 1

// maxHardState bounds an encoded HardState: three epochs of at most a few
// thousand IDs of maxIDLen bytes.
const maxHardState = 1 << 20

type hardFile struct {
	Version int             `json:"version"`
	State   agree.HardState `json:"state"`
}

// EncodeHardState encodes h for a file that keeps it across restarts
// (JSON, versioned, so an operator can read it).
func EncodeHardState(h HardState) ([]byte, error) {
	if err := checkHardState(h); err != nil {
		return nil, err
	}
	b, err := json.MarshalIndent(hardFile{Version: hardStateVersion, State: h}, "", " ")
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrHardState, err)
	}
	return append(b, '\n'), nil
}

// DecodeHardState decodes what EncodeHardState wrote. Anything else (an
// unknown version, unknown fields, an epoch whose members are not a
// sorted set of valid IDs) is an ErrHardState error.
func DecodeHardState(b []byte) (HardState, error) {
	if len(b) > maxHardState {
		return HardState{}, fmt.Errorf("%w: %d bytes, at most %d", ErrHardState, len(b), maxHardState)
	}
	var f hardFile
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	if err := d.Decode(&f); err != nil {
		return HardState{}, fmt.Errorf("%w: %w", ErrHardState, err)
	}
	if d.More() {
		return HardState{}, fmt.Errorf("%w: trailing data", ErrHardState)
	}
	if f.Version != hardStateVersion {
		return HardState{}, fmt.Errorf("%w: version %d, this build reads %d", ErrHardState, f.Version, hardStateVersion)
	}
	if err := checkHardState(f.State); err != nil {
		return HardState{}, err
	}
	return f.State, nil
}

func checkHardState(h HardState) error {
	if err := checkEpoch("held", h.Held); err != nil {
		return err
	}
	for _, v := range []struct {
		name string
		v    *agree.Value
	}{{"made", h.Made}, {"accepted", h.Accepted}, {"left", h.Left}} {
		if v.v == nil {
			continue
		}
		if err := checkEpoch(v.name, v.v.Epoch); err != nil {
			return err
		}
		if v.v.Source != "" && !validID(v.v.Source) || slices.ContainsFunc(v.v.Targets, func(id string) bool { return !validID(id) }) {
			return fmt.Errorf("%w: %s value: bad sync source or target", ErrHardState, v.name)
		}
	}
	for _, b := range []agree.Ballot{h.Promised, h.AccBallot} {
		if b.By != "" && !validID(b.By) {
			return fmt.Errorf("%w: ballot by %q", ErrHardState, b.By)
		}
	}
	if h.Held.Number == 0 && (h.Made != nil || h.Left != nil || h.Amnesiac) {
		return fmt.Errorf("%w: no held epoch, but a value that made it, a value that left it or an amnesiac mark", ErrHardState)
	}
	return nil
}

func checkEpoch(name string, e agree.Epoch) error {
	switch {
	case (e.Number == 0) != (len(e.Members) == 0):
		return fmt.Errorf("%w: %s epoch %d with %d members: want both or neither", ErrHardState, name, e.Number, len(e.Members))
	case !slices.IsSorted(e.Members) || len(slices.Compact(slices.Clone(e.Members))) != len(e.Members):
		return fmt.Errorf("%w: %s epoch %d: members not a sorted set", ErrHardState, name, e.Number)
	case slices.ContainsFunc(e.Members, func(id string) bool { return !validID(id) }):
		return fmt.Errorf("%w: %s epoch %d: bad member ID", ErrHardState, name, e.Number)
	}
	return nil
}

func validID(id string) bool { return id != "" && len(id) <= maxIDLen }
