package quic

import (
	"errors"
	"fmt"

	quicgo "github.com/quic-go/quic-go"

	"github.com/ringtrain/ringtrain/internal/secret"
	"github.com/ringtrain/ringtrain/transport"
	"github.com/ringtrain/ringtrain/transport/internal/peers"
)

// Application error codes on connections (CONNECTION_CLOSE) and streams
// (RESET_STREAM / STOP_SENDING).
const (
	codeClosed    = 0x100 // endpoint closed
	codeProtocol  = 0x101 // protocol violation; the reason text says which
	codeDuplicate = 0x102 // connection refused: the pair already has one
	codeReplaced  = 0x103 // connection replaced by a newer one to the same peer
	codeFailed    = 0x104 // connection closed: the peer was declared dead (FailPeer)
	codeIdle      = 0x105 // connection closed: it carried nothing for Config.IdleClose
	codeCanceled  = 0x110 // stream: the local call's ctx ended
	codeAborted   = 0x111 // stream: the operation was aborted (reason on the control stream)
	codeEpoch     = 0x113 // stream: the message's epoch is refused
)

func opErr(op, peer string, tag transport.Tag, err error) error {
	return &transport.OpError{Op: op, Peer: peer, Tag: tag, Err: err}
}

// closeCause turns the reason a QUIC connection ended into a sentinel-wrapped
// error.
func closeCause(err error) error {
	var ae *quicgo.ApplicationError
	if errors.As(err, &ae) {
		who := "local"
		if ae.Remote {
			who = "peer"
		}
		switch ae.ErrorCode {
		case codeProtocol:
			return fmt.Errorf("%w: %s closed the connection: %s", transport.ErrProtocol, who, ae.ErrorMessage)
		case codeClosed:
			if !ae.Remote {
				return transport.ErrClosed
			}
			return fmt.Errorf("%w: peer closed its endpoint", transport.ErrPeerLost)
		case codeIdle:
			// Not a loss: the connection was idle; the next Conn dials
			// again.
			return fmt.Errorf("%w: %s closed the idle connection: %s", transport.ErrClosed, who, ae.ErrorMessage)
		}
		return fmt.Errorf("%w: %s closed the connection: %s", transport.ErrPeerLost, who, ae.ErrorMessage)
	}
	var it *quicgo.IdleTimeoutError
	if errors.As(err, &it) {
		return fmt.Errorf("%w: no network activity within the idle timeout", transport.ErrPeerLost)
	}
	if errors.Is(err, quicgo.ErrServerClosed) || errors.Is(err, quicgo.ErrTransportClosed) {
		return transport.ErrClosed
	}
	return fmt.Errorf("%w: %v", transport.ErrPeerLost, err)
}

// connEnded reports errors that mean the QUIC connection itself ended
// (closed by either side, idle timeout, stateless reset, transport error),
// as opposed to a peer breaking the framing of a stream. A stream read
// failing with one of them is not a protocol violation: the connection's
// own close cause (closeCause) says what happened.
func connEnded(err error) bool {
	var (
		ae *quicgo.ApplicationError
		it *quicgo.IdleTimeoutError
		sr *quicgo.StatelessResetError
		te *quicgo.TransportError
		ht *quicgo.HandshakeTimeoutError
	)
	return errors.As(err, &ae) || errors.As(err, &it) || errors.As(err, &sr) ||
		errors.As(err, &te) || errors.As(err, &ht) || errors.Is(err, quicgo.ErrTransportClosed)
}

// handshakeError explains a failed dial; wrong secrets are said plainly.
func handshakeError(err, verifyErr error) error {
	if verifyErr != nil {
		return verifyErr
	}
	var te *quicgo.TransportError
	if errors.As(err, &te) && te.Remote && te.ErrorCode.IsCryptoError() {
		// The peer refused our certificate: it does not trust our CA.
		return fmt.Errorf("%w: the peer refused our certificate (%v)", secret.ErrForeignPeer, err)
	}
	return err
}

// permanent reports dial errors that retrying cannot fix.
func permanent(err error) bool {
	return errors.Is(err, secret.ErrForeignPeer) || errors.Is(err, secret.ErrWrongPeer) ||
		errors.Is(err, peers.ErrDuplicate) || errors.Is(err, transport.ErrProtocol) ||
		errors.Is(err, transport.ErrUnknownPeer) || errors.Is(err, transport.ErrClosed)
}
