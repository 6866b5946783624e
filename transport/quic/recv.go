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

// inStream is one incoming data stream: messages of one tag, in order. Its
// reader goroutine reads each message's header; Recv reads the payload
// straight into the caller's buffer and hands the stream back. The two never
// read at once.
type inStream struct {
	s *quicgo.ReceiveStream
	// n is the payload length of the message whose header was read and
	// that no Recv has taken yet; -1 otherwise. Guarded by conn.mu.
	n int
	// skip is how many payload bytes of an abandoned message (its Recv ran
	// out of time, or its buffer was too small) the reader discards before
	// the next header. Set by Recv before it hands the stream back.
	skip int
	next chan struct{} // capacity 1: Recv hands the stream back to the reader
	gone chan struct{} // closed when the stream left its tag's queue
}

func newInStream(s *quicgo.ReceiveStream, n int) *inStream {
	return &inStream{s: s, n: n, next: make(chan struct{}, 1), gone: make(chan struct{})}
}

// Recv receives the next message of tag into p.
func (c *conn) Recv(ctx context.Context, tag transport.Tag, p []byte) (int, error) {
	ts := c.use(tag)
	defer c.done(tag, ts)
	if err := lock(ctx, ts.recvSem); err != nil {
		return 0, opErr("recv", c.peer, tag, err)
	}
	defer func() { <-ts.recvSem }()
	n, err := c.recv(ctx, tag, ts, p)
	if err != nil {
		return 0, opErr("recv", c.peer, tag, err)
	}
	return n, nil
}

func (c *conn) recv(ctx context.Context, tag transport.Tag, ts *tagState, p []byte) (int, error) {
	var st *inStream
	var n int
	for {
		c.mu.Lock()
		if err := c.errLocked(tag); err != nil {
			c.mu.Unlock()
			return 0, err
		}
		// Streams of a tag are read in the order they were opened: the
		// first one until its end, then the next.
		if len(ts.queue) > 0 && ts.queue[0].n >= 0 {
			st, n = ts.queue[0], ts.queue[0].n
			st.n = -1
			ts.reading = st
			c.mu.Unlock()
			break
		}
		ch := ts.notify
		c.mu.Unlock()
		select {
		case <-ch:
		case <-c.dead:
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
	if n > len(p) {
		c.handBack(ts, st, n) // the message is dropped; the stream goes on
		return 0, fmt.Errorf("%w: message of %d bytes, buffer of %d", transport.ErrMessageSize, n, len(p))
	}
	k, err := readFull(ctx, st.s, p[:n])
	switch {
	case err == nil:
		c.handBack(ts, st, 0)
		return n, nil
	case ctx.Err() != nil && isTimeout(err) && k == 0:
		// Nothing of the message was read: it stays for the next Recv.
		c.mu.Lock()
		st.n = n
		ts.reading = nil
		ts.wake()
		c.drainedLocked()
		c.mu.Unlock()
		return 0, ctx.Err()
	case ctx.Err() != nil && isTimeout(err):
		c.handBack(ts, st, n-k) // the rest of this message is discarded
		return 0, ctx.Err()
	case err == io.ErrUnexpectedEOF || err == io.EOF:
		c.handBack(ts, st, 0)
		c.violation("message shorter than its header's %d bytes", n)
		return 0, fmt.Errorf("%w: message shorter than its header's %d bytes", transport.ErrProtocol, n)
	}
	c.handBack(ts, st, 0) // the stream is broken; its reader sees the same error
	return 0, c.streamErr(ctx, tag, ts, err)
}

// handBack returns st to its reader, which first discards skip bytes.
func (c *conn) handBack(ts *tagState, st *inStream, skip int) {
	c.mu.Lock()
	st.skip = skip
	ts.reading = nil
	c.drainedLocked()
	c.mu.Unlock()
	st.next <- struct{}{} // never blocks: one hand-back per header
}

// readFull reads len(p) bytes from s, or fewer if ctx ends first; the count
// says how much of the message was consumed.
func readFull(ctx context.Context, s *quicgo.ReceiveStream, p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	fired := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		s.SetReadDeadline(time.Now())
		close(fired)
	})
	k, err := io.ReadFull(s, p)
	if !stop() {
		<-fired
		s.SetReadDeadline(time.Time{}) // the stream outlives this call
	}
	return k, err
}

func isTimeout(err error) bool {
	var te interface{ Timeout() bool }
	return errors.As(err, &te) && te.Timeout()
}

// readStream is st's reader: it reads each next header of the stream once
// the previous message was consumed, and removes the stream from its tag's
// queue at its end.
func (c *conn) readStream(tag transport.Tag, ts *tagState, st *inStream) {
	hbuf := make([]byte, 64) // grows for the rare large header
	max := uint64(c.e.cfg.MaxMessage)
	var scratch []byte
	for {
		select {
		case <-st.next:
		case <-st.gone:
			return
		case <-c.dead:
			return
		}
		c.mu.Lock()
		skip := st.skip
		st.skip = 0
		c.mu.Unlock()
		if skip > 0 {
			if scratch == nil {
				scratch = make([]byte, 32<<10)
			}
			if err := discard(st.s, skip, scratch); err != nil {
				c.endStream(tag, ts, st, err)
				return
			}
		}
		h, err := wire.ReadDataHeader(st.s, &hbuf, max)
		if err != nil {
			c.endStream(tag, ts, st, err)
			return
		}
		if got := (transport.Tag{Epoch: h.Epoch, Op: h.Op}); got != tag {
			c.violation("a data stream of %s carries a message of %s", tag, got)
			return
		}
		if h.Flags&uint32(wire.DataFlag_DATA_FLAG_ABORT) != 0 {
			c.mu.Lock()
			c.failLocked(tag, &transport.AbortError{By: c.peer, Reason: transport.TruncateReason(h.AbortReason)})
			c.cancelLocked(tag, codeAborted)
			c.mu.Unlock()
			return
		}
		c.mu.Lock()
		select {
		case <-st.gone:
			c.mu.Unlock()
			return
		default:
		}
		st.n = int(h.Length)
		ts.wake()
		c.mu.Unlock()
	}
}

// discard reads and drops n bytes of s.
func discard(s io.Reader, n int, scratch []byte) error {
	for n > 0 {
		k, err := s.Read(scratch[:min(n, len(scratch))])
		n -= k
		if err != nil && n > 0 {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return err
		}
	}
	return nil
}

// endStream handles the end of st's reading: a clean end between messages,
// the peer's reset, our own cancellation, the connection's end, or bytes
// that break the protocol.
func (c *conn) endStream(tag transport.Tag, ts *tagState, st *inStream, err error) {
	var se *quicgo.StreamError
	switch {
	case err == io.EOF, errors.As(err, &se) && se.Remote:
		// The sender closed the stream, or reset it between messages
		// (its Send was cancelled before the next message's first byte;
		// an abort's reason comes on the control stream). Later messages
		// of the tag come on a newer stream.
		c.mu.Lock()
		c.removeLocked(tag, ts, st)
		c.mu.Unlock()
	case se != nil, connEnded(err), c.qc.Context().Err() != nil, c.isDead():
		// Cancelled here (abort, old epoch), or the connection ended.
	case err == io.ErrUnexpectedEOF:
		c.violation("data stream of %s ended inside a message", tag)
	default:
		c.violation("data stream of %s: %v", tag, err)
	}
}

// removeLocked takes st out of its tag's queue.
func (c *conn) removeLocked(tag transport.Tag, ts *tagState, st *inStream) {
	for i, q := range ts.queue {
		if q == st {
			ts.queue = append(ts.queue[:i], ts.queue[i+1:]...)
			close(st.gone)
			break
		}
	}
	ts.wake()
	c.gcLocked(tag, ts)
	c.drainedLocked()
}
