// Package transport defines the seam between ringtrain's collectives and the
// network: an Endpoint (one node's access to its peers) and a Conn (a
// reliable, ordered, tagged message channel to one peer).
//
// Invariants every implementation keeps:
//   - Messages sent with the same Tag on one Conn arrive in order, exactly
//     once, unmodified; messages with different Tags never mix, so concurrent
//     operations on one Conn are independent.
//   - Every blocking call takes a context and returns when it is done; no call
//     blocks past the context's deadline.
//   - Errors are *OpError values that name the peer, the operation and the tag
//     and wrap one of the sentinel errors below (or a context error), so
//     callers can use errors.Is.
//   - A payload passed to Send may be reused by the caller once Send returns.
//   - A definite loss (ErrPeerLost) is distinct from running out of time
//     while connecting (ErrUnreachable); endpoints that implement PeerFailer
//     turn a failure detector's verdict into ErrPeerLost at once.
//   - Reasons received from peers are bounded (MaxReasonLen).
//
// Implementations: transport/mem (in one process, with fault injection) and
// transport/quic (QUIC with mutual TLS).
package transport

import (
	"context"
	"errors"
	"fmt"
)

// Sentinel errors. Implementations wrap them in *OpError.
var (
	// ErrClosed: the local endpoint or connection was closed, or either
	// end closed the connection because it was idle (not a loss: the next
	// Conn dials again).
	ErrClosed = errors.New("connection closed")
	// ErrPeerLost: the remote peer definitely went away: it closed, its
	// connection broke or timed out after it was established, or the failure
	// detector declared it dead (PeerFailer). Callers may treat it as a loss.
	ErrPeerLost = errors.New("peer lost")
	// ErrUnreachable: no connection to the peer could be established before
	// the caller's deadline. It is not a definite loss (the peer may be slow
	// to start, or the network briefly partitioned), so it does not wrap
	// ErrPeerLost; a dial that ran out of time wraps both ErrUnreachable and
	// the context's error.
	ErrUnreachable = errors.New("peer unreachable")
	// ErrAborted: the remote peer aborted the operation with this tag; the
	// error text carries the peer's reason.
	ErrAborted = errors.New("operation aborted by peer")
	// ErrMessageSize: a message does not fit the receive buffer or exceeds
	// the transport's frame limit.
	ErrMessageSize = errors.New("message size out of bounds")
	// ErrEpoch: a message belongs to another membership epoch than expected.
	ErrEpoch = errors.New("message from another membership epoch")
	// ErrProtocol: the peer sent bytes that do not follow the wire protocol.
	ErrProtocol = errors.New("protocol violation")
	// ErrUnknownPeer: no route to the named peer is known.
	ErrUnknownPeer = errors.New("unknown peer")
)

// Tag identifies the logical message stream one operation uses on a Conn.
// Every collective operation gets its own (Epoch, Op) pair, so the messages of
// concurrent operations never mix.
type Tag struct {
	Epoch uint64 // membership epoch the operation runs in
	Op    uint64 // operation sequence number within the epoch
}

// ControlOpBase is the first Op value reserved for control protocols
// (membership epochs, state sync). Collectives number their operations below
// it, so a control message can never be mistaken for a tensor chunk.
const ControlOpBase uint64 = 1 << 63

func (t Tag) String() string { return fmt.Sprintf("epoch %d op %d", t.Epoch, t.Op) }

// Conn is a reliable, ordered, tagged message channel to one peer. It is safe
// for concurrent use; concurrent Sends (or Recvs) with the same Tag are
// serialized in an unspecified order.
type Conn interface {
	// Peer is the remote peer's node ID.
	Peer() string
	// Send delivers one message with the given tag. p may be reused once
	// Send returns. Send may block for flow control.
	Send(ctx context.Context, tag Tag, p []byte) error
	// Recv receives the next message with the given tag into p and returns
	// its length. A message longer than p is an ErrMessageSize error.
	Recv(ctx context.Context, tag Tag, p []byte) (int, error)
	// Abort tells the peer that the operation with this tag failed locally
	// because of reason: the peer's pending and future Send and Recv calls
	// with the same tag return an error wrapping ErrAborted whose text
	// contains reason. Local pending calls on the tag also return. Abort is
	// best effort: it does not block longer than ctx allows.
	Abort(ctx context.Context, tag Tag, reason error) error
}

// Endpoint is one node's access to the network.
type Endpoint interface {
	// ID is this node's ID.
	ID() string
	// Conn returns the connection to peer, establishing it if needed. There
	// is at most one connection per peer pair; it is shared by all callers
	// and reused across operations and epochs.
	Conn(ctx context.Context, peer string) (Conn, error)
	// Close closes the endpoint and all its connections; peers see ErrPeerLost.
	Close() error
}

// PeerFailer is implemented by endpoints (transport/mem, transport/quic) that
// can be told by a failure detector that a peer is dead. Callers type-assert
// ep.(transport.PeerFailer).
type PeerFailer interface {
	// FailPeer declares peer id dead (gossip's failure detector said so):
	// every operation blocked on it fails at once with an error wrapping
	// ErrPeerLost (naming the peer, tag and cause), and its connection is
	// closed; a later dial in either direction may connect again.
	FailPeer(id string, cause error)
}

// MaxReasonLen bounds an abort reason (bytes) that a transport sends or
// stores: reasons from peers are truncated to it, so remembered aborted tags
// cost at most this much each.
const MaxReasonLen = 1024

// TruncateReason cuts s to at most MaxReasonLen bytes, on a UTF-8 boundary.
func TruncateReason(s string) string {
	if len(s) <= MaxReasonLen {
		return s
	}
	i := MaxReasonLen
	for i > 0 && s[i]&0xC0 == 0x80 { // do not split a multi-byte rune
		i--
	}
	return s[:i]
}

// OpError is the error every transport returns: it names the operation, the
// remote peer and the tag.
type OpError struct {
	Op   string // "send", "recv", "dial", "abort", ...
	Peer string
	Tag  Tag
	Err  error
}

func (e *OpError) Error() string {
	return fmt.Sprintf("%s peer %s (%s): %v", e.Op, e.Peer, e.Tag, e.Err)
}

func (e *OpError) Unwrap() error { return e.Err }

// AbortError is the cause wrapped when a peer aborted an operation: it
// carries the peer's reason text and matches ErrAborted.
type AbortError struct {
	By     string // peer that sent the abort
	Reason string
}

func (e *AbortError) Error() string {
	return fmt.Sprintf("%v %s: %s", ErrAborted, e.By, e.Reason)
}

// Is makes errors.Is(err, ErrAborted) true.
func (e *AbortError) Is(target error) bool { return target == ErrAborted }
