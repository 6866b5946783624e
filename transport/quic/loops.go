package quic

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	quicgo "github.com/quic-go/quic-go"

	"github.com/ringtrain/ringtrain/internal/wire"
	"github.com/ringtrain/ringtrain/transport"
)

// headerTimeout bounds the wait for a data stream's first header once QUIC
// has announced the stream. Senders write it right after opening the
// stream, so only a broken peer (or a machine starved of CPU for this long)
// hits it.
const headerTimeout = 30 * time.Second

// controlLoop reads the peer's control frames until the connection ends.
func (c *conn) controlLoop() {
	buf := make([]byte, 512) // grows for the rare large control frame
	for {
		body, err := wire.ReadFrameGrow(c.ctrl, &buf, wire.MaxControlSize)
		if err != nil {
			// A connection closed by either application (an endpoint
			// shutting down) ends the loop; anything else is the peer
			// breaking the protocol.
			if c.qc.Context().Err() == nil && !c.isDead() && !connEnded(err) {
				c.violation("control stream: %v", err)
			}
			return
		}
		m, err := wire.DecodeControl(body)
		if err != nil {
			c.violation("control stream: %v", err)
			return
		}
		switch b := m.Body.(type) {
		case *wire.Control_Abort:
			tag := transport.Tag{Epoch: b.Abort.Epoch, Op: b.Abort.Op}
			c.mu.Lock()
			c.failLocked(tag, &transport.AbortError{By: c.peer, Reason: transport.TruncateReason(b.Abort.Reason)})
			c.cancelLocked(tag, codeAborted)
			c.mu.Unlock()
		case *wire.Control_Error:
			c.peerError(b.Error)
		case *wire.Control_Goodbye:
			c.mu.Lock()
			c.peerBye, c.peerSent = true, b.Goodbye.DataStreams
			c.drainedLocked()
			c.mu.Unlock()
		case *wire.Control_GoodbyeAck:
			c.byeAckOnce.Do(func() { close(c.byeAckRecvd) })
		case *wire.Control_Hello, *wire.Control_HelloAck:
			c.violation("unexpected %T after the handshake", m.Body)
			return
		default:
			// Membership messages ride on transport tags today; a bare
			// control frame of another kind has no consumer yet.
			c.e.log.Debug("ignored control message", "peer", c.peer, "type", fmt.Sprintf("%T", m.Body))
		}
	}
}

// peerError records an Error frame: the peer refused one of our messages.
func (c *conn) peerError(m *wire.Error) {
	tag := transport.Tag{Epoch: m.Epoch, Op: m.Op}
	m.Message = transport.TruncateReason(m.Message) // stored per tag: bounded
	var err error
	switch m.Code {
	case wire.ErrorCode_ERROR_CODE_EPOCH:
		err = fmt.Errorf("%w: peer %s refused a message of epoch %d: it is at epoch %d", transport.ErrEpoch, c.peer, m.Epoch, m.ReceiverEpoch)
	case wire.ErrorCode_ERROR_CODE_MESSAGE_SIZE:
		err = fmt.Errorf("%w: peer %s: %s", transport.ErrMessageSize, c.peer, m.Message)
	default:
		err = fmt.Errorf("%w: peer %s reports: %s", transport.ErrProtocol, c.peer, m.Message)
	}
	c.e.log.Warn("peer refused a message", "peer", c.peer, "tag", tag.String(), "err", err)
	c.mu.Lock()
	c.failLocked(tag, err)
	if ts := c.tags[tag]; ts != nil {
		ts.wake()
	}
	c.mu.Unlock()
}

// dataLoop accepts the peer's data streams, reads the first header of each
// and queues the stream on its tag, in stream-ID (= open) order, before it
// looks at the next one: so a tag's streams are read in the order the peer
// opened them. Each queued stream gets a reader (readStream).
func (c *conn) dataLoop() {
	var hbuf []byte
	max := uint64(c.e.cfg.MaxMessage)
	for {
		c.mu.Lock()
		c.drainedLocked()
		c.mu.Unlock()
		s, err := c.qc.AcceptUniStream(context.Background())
		if err != nil {
			return
		}
		if !c.acceptStream(s, &hbuf, max) {
			return
		}
	}
}

// acceptStream reads s's first header and queues it; false when the
// connection is done for (ended, or the peer broke the protocol).
func (c *conn) acceptStream(s *quicgo.ReceiveStream, hbuf *[]byte, max uint64) bool {
	counted := false
	defer func() {
		if !counted {
			c.mu.Lock()
			c.accepted++
			c.mu.Unlock()
		}
	}()
	s.SetReadDeadline(time.Now().Add(headerTimeout))
	h, err := wire.ReadDataHeader(s, hbuf, max)
	if err != nil {
		var se *quicgo.StreamError
		if errors.As(err, &se) && se.Remote || err == io.EOF {
			return true // the sender gave up on the stream before its first message
		}
		if c.qc.Context().Err() == nil && !connEnded(err) {
			c.violation("data stream header: %v", err)
		}
		return false
	}
	s.SetReadDeadline(time.Time{})
	tag := transport.Tag{Epoch: h.Epoch, Op: h.Op}
	if h.Flags&uint32(wire.DataFlag_DATA_FLAG_ABORT) != 0 {
		s.CancelRead(codeAborted)
		c.mu.Lock()
		c.failLocked(tag, &transport.AbortError{By: c.peer, Reason: transport.TruncateReason(h.AbortReason)})
		c.cancelLocked(tag, codeAborted)
		c.mu.Unlock()
		return true
	}
	if floor := c.e.epoch.Load(); h.Epoch < floor && tag.Op < transport.ControlOpBase {
		s.CancelRead(codeEpoch)
		c.e.log.Warn("refused a message from an old epoch", "peer", c.peer, "tag", tag.String(), "epoch", floor)
		c.e.wg.Go(func() { c.refuseEpoch(tag, floor) })
		return true
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.accepted++ // with the stream queued, so a Goodbye cannot overtake it
	counted = true
	if c.failed[tag] != nil {
		s.CancelRead(codeAborted)
		return true
	}
	ts := c.tagLocked(tag)
	st := newInStream(s, int(h.Length))
	ts.queue = append(ts.queue, st)
	ts.wake()
	c.e.wg.Go(func() { c.readStream(tag, ts, st) })
	return true
}

// refuseEpoch tells the peer its message's epoch is refused.
func (c *conn) refuseEpoch(tag transport.Tag, floor uint64) {
	ctx, cancel := context.WithTimeout(context.Background(), c.e.cfg.HandshakeTimeout)
	defer cancel()
	err := c.writeControl(ctx, &wire.Control{Body: &wire.Control_Error{Error: &wire.Error{
		Epoch: tag.Epoch, Op: tag.Op, Code: wire.ErrorCode_ERROR_CODE_EPOCH,
		Message: fmt.Sprintf("node %s is at epoch %d", c.e.cfg.ID, floor), ReceiverEpoch: floor,
	}}})
	if err != nil {
		c.e.log.Debug("could not report a refused epoch", "peer", c.peer, "err", err)
	}
}
