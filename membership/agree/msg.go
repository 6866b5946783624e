package agree

import (
	"fmt"
	"slices"
	"strings"
)

// Epoch is a committed epoch of membership: its number and its members in
// ring order (sorted IDs).
type Epoch struct {
	Number  uint64
	Members []string
}

// Has reports whether id is a member.
func (e Epoch) Has(id string) bool { return slices.Contains(e.Members, id) }

func (e Epoch) String() string { return fmt.Sprintf("%d%v", e.Number, e.Members) }

// Ballot orders proposals for one base epoch: by N, then by proposer ID.
type Ballot struct {
	N  uint64
	By string
}

// Less reports whether b orders before o.
func (b Ballot) Less(o Ballot) bool {
	if b.N != o.N {
		return b.N < o.N
	}
	return b.By < o.By
}

// IsZero reports whether b is the zero ballot (no promise).
func (b Ballot) IsZero() bool { return b.N == 0 && b.By == "" }

func (b Ballot) String() string { return fmt.Sprintf("%d.%s", b.N, b.By) }

// Value is what one agreement round decides: the successor of a base
// epoch, with the state sync it prescribes.
type Value struct {
	Epoch   Epoch
	Step    uint64   // steps applied to the state the epoch starts from
	Source  string   // member whose state the targets receive ("" none)
	Targets []string // members that receive Source's state
}

func (v *Value) clone() *Value {
	if v == nil {
		return nil
	}
	c := *v
	c.Epoch.Members = slices.Clone(v.Epoch.Members)
	c.Targets = slices.Clone(v.Targets)
	return &c
}

func (v *Value) String() string {
	if v == nil {
		return "<nil>"
	}
	return fmt.Sprintf("%v@%d src=%s tgt=%v", v.Epoch, v.Step, v.Source, v.Targets)
}

// Kind is a message kind.
type Kind uint8

const (
	// Report: a member at a step boundary → its coordinator; or a node
	// without an epoch → active peers (a join request, Epoch 0 or stale).
	Report Kind = iota + 1
	// Continue: coordinator → member: nothing changed, run the next step.
	Continue
	// Prepare: proposer → acceptors of Base (phase 1).
	Prepare
	// Promise: acceptor → proposer, with the value it accepted, if any.
	Promise
	// Accept: proposer → acceptors (phase 2).
	Accept
	// Accepted: acceptor → proposer.
	Accepted
	// Commit: the decided successor of Base, to everyone concerned.
	Commit
	// Nack: acceptor → proposer: refused; Ballot is the acceptor's promise
	// and Epoch its held epoch number (a newer one tells the proposer it
	// is behind).
	Nack
	kindMax
)

var kindNames = [...]string{"", "report", "continue", "prepare", "promise", "accept", "accepted", "commit", "nack"}

func (k Kind) String() string {
	if k > 0 && k < kindMax {
		return kindNames[k]
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// Report flags.
const (
	FlagFailed  uint8 = 1 << iota // the step failed
	FlagLeave                     // the sender leaves gracefully
	FlagNoState                   // the sender holds no state yet
	FlagJoin                      // the sender runs no epoch: admit it
	// FlagAll marks a prepare or accept of a round that needs every
	// acceptor (a base's re-founding with members that lost their state).
	FlagAll
)

// Msg is one protocol message. From and To are filled in by the machine
// on output and by the driver (from the connection) on input.
type Msg struct {
	Kind     Kind
	From, To string
	// Epoch: report = the sender's epoch (0 without one); continue = the
	// unchanged epoch; nack = the refuser's held epoch.
	Epoch uint64
	// Base: prepare/promise/accept/accepted/commit/nack = the epoch the
	// round replaces (0: the first epoch).
	Base  uint64
	Seq   uint64 // report: the sender's boundary count; continue: the report it answers
	Step  uint64 // report: steps applied to the sender's state
	Flags uint8
	Lost  []string // report: peers the sender's failed step lost
	// Ballot: prepare/promise/accept/accepted/nack.
	Ballot Ballot
	// Cands: prepare/accept of a first epoch (Base 0): the acceptors, all
	// of which must promise.
	Cands []string
	// AccBallot and Value: promise = the value the acceptor accepted (nil
	// if none); accept/commit = the value.
	AccBallot Ballot
	Value     *Value
}

func (m Msg) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s→%s", m.Kind, m.From, m.To)
	switch m.Kind {
	case Report:
		fmt.Fprintf(&b, " e=%d seq=%d step=%d flags=%d lost=%v", m.Epoch, m.Seq, m.Step, m.Flags, m.Lost)
	case Continue:
		fmt.Fprintf(&b, " e=%d seq=%d", m.Epoch, m.Seq)
	case Nack:
		fmt.Fprintf(&b, " base=%d ballot=%v held=%d", m.Base, m.Ballot, m.Epoch)
	default:
		fmt.Fprintf(&b, " base=%d ballot=%v", m.Base, m.Ballot)
		if m.Cands != nil {
			fmt.Fprintf(&b, " cands=%v", m.Cands)
		}
		if m.Value != nil {
			fmt.Fprintf(&b, " acc=%v value=%v", m.AccBallot, m.Value)
		}
	}
	return b.String()
}
