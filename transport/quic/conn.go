package quic

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	quicgo "github.com/quic-go/quic-go"

	"github.com/ringtrain/ringtrain/internal/wire"
	"github.com/ringtrain/ringtrain/transport"
)

// maxAborted bounds how many aborted or refused tags a conn remembers (so
// that late calls on them still fail) before forgetting the oldest.
const maxAborted = 4096

// conn is the connection to one peer. It implements transport.Conn.
type conn struct {
	e          *Endpoint
	peer       string
	qc         *quicgo.Conn
	ctrl       *quicgo.Stream
	dialedByMe bool
	peerInc    uint64

	ctrlSem chan struct{} // one control-stream writer at a time

	startOnce sync.Once
	dead      chan struct{} // closed when the connection ended
	deadErr   error         // why; set before dead is closed

	mu       sync.Mutex
	tags     map[transport.Tag]*tagState
	failed   map[transport.Tag]error // aborted or refused tags
	failedQ  []transport.Tag         // insertion order of failed, for eviction
	closeErr error                   // first close reason; guarded by mu

	// Graceful close (see wire.Goodbye).
	sent        atomic.Uint64 // message streams opened toward the peer
	accepted    uint64        // message streams accepted from the peer; guarded by mu
	peerBye     bool          // the peer sent Goodbye; guarded by mu
	peerSent    uint64        // its announced stream count; guarded by mu
	byeAcked    bool          // we sent GoodbyeAck; guarded by mu
	byeAckRecvd chan struct{} // closed when the peer acknowledged our Goodbye
	byeAckOnce  sync.Once
}

// tagState is the per-tag state; it exists only while a call uses the tag
// or messages wait for a Recv, so finished operations leave nothing behind.
type tagState struct {
	sendSem chan struct{} // one Send at a time keeps stream order = call order
	tails   chan struct{} // slots of message tails still being written behind
	recvSem chan struct{}
	queue   []inbound     // arrived, unread messages in stream order
	notify  chan struct{} // closed (and replaced) on arrival or failure
	sending map[*quicgo.SendStream]struct{}
	reading *quicgo.ReceiveStream
	users   int
}

type inbound struct {
	s *quicgo.ReceiveStream
	n int // payload length from the header
}

var _ transport.Conn = (*conn)(nil)

func newConn(e *Endpoint, peer string, qc *quicgo.Conn, ctrl *quicgo.Stream, dialedByMe bool, peerInc uint64) *conn {
	return &conn{
		e: e, peer: peer, qc: qc, ctrl: ctrl, dialedByMe: dialedByMe, peerInc: peerInc,
		dead:        make(chan struct{}),
		ctrlSem:     make(chan struct{}, 1),
		byeAckRecvd: make(chan struct{}),
		tags:        make(map[transport.Tag]*tagState),
		failed:      make(map[transport.Tag]error),
	}
}

// start launches the connection's readers once it is installed.
func (c *conn) start() {
	c.startOnce.Do(func() {
		c.e.wg.Go(c.controlLoop)
		c.e.wg.Go(c.dataLoop)
		c.e.wg.Go(func() {
			<-c.qc.Context().Done()
			c.markDead(closeCause(context.Cause(c.qc.Context())))
			c.e.forget(c)
		})
	})
}

func (c *conn) Peer() string { return c.peer }

func (c *conn) isDead() bool {
	select {
	case <-c.dead:
		return true
	default:
		return false
	}
}

// close ends the connection locally; err is what pending and later calls
// report.
func (c *conn) close(code quicgo.ApplicationErrorCode, msg string, err error) {
	c.mu.Lock()
	if c.closeErr == nil {
		c.closeErr = err
	}
	c.mu.Unlock()
	c.qc.CloseWithError(code, msg)
	c.markDead(err)
}

func (c *conn) markDead(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.isDead() {
		return
	}
	if c.closeErr != nil {
		err = c.closeErr
	}
	c.deadErr = err
	close(c.dead)
	for _, ts := range c.tags {
		ts.wake()
	}
}

// violation closes the connection because the peer broke the protocol.
func (c *conn) violation(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	c.e.log.Warn("protocol violation; closing the connection", "peer", c.peer, "err", msg)
	c.close(codeProtocol, msg, fmt.Errorf("%w: %s", transport.ErrProtocol, msg))
}

func (ts *tagState) wake() {
	close(ts.notify)
	ts.notify = make(chan struct{})
}

// use returns the tag's state, creating it, and counts the caller as a user.
func (c *conn) use(tag transport.Tag) *tagState {
	c.mu.Lock()
	defer c.mu.Unlock()
	ts := c.tagLocked(tag)
	ts.users++
	return ts
}

func (c *conn) tagLocked(tag transport.Tag) *tagState {
	ts := c.tags[tag]
	if ts == nil {
		ts = &tagState{
			sendSem: make(chan struct{}, 1),
			recvSem: make(chan struct{}, 1),
			tails:   make(chan struct{}, maxTails),
			notify:  make(chan struct{}),
		}
		c.tags[tag] = ts
	}
	return ts
}

func (c *conn) done(tag transport.Tag, ts *tagState) {
	c.mu.Lock()
	ts.users--
	c.gcLocked(tag, ts)
	c.mu.Unlock()
}

func (c *conn) gcLocked(tag transport.Tag, ts *tagState) {
	if ts.users == 0 && len(ts.queue) == 0 && c.tags[tag] == ts {
		delete(c.tags, tag)
	}
}

// errLocked is the error every call on tag must return now, if any.
func (c *conn) errLocked(tag transport.Tag) error {
	if err := c.failed[tag]; err != nil {
		return err
	}
	if c.isDead() {
		return c.deadErr
	}
	return nil
}

func (c *conn) failLocked(tag transport.Tag, err error) {
	if _, ok := c.failed[tag]; ok {
		return
	}
	if len(c.failedQ) >= maxAborted {
		delete(c.failed, c.failedQ[0])
		c.failedQ = c.failedQ[1:]
	}
	c.failedQ = append(c.failedQ, tag)
	c.failed[tag] = err
}

// cancelLocked cancels every stream of tag and wakes its waiters.
func (c *conn) cancelLocked(tag transport.Tag, code quicgo.StreamErrorCode) {
	ts := c.tags[tag]
	if ts == nil {
		return
	}
	for _, in := range ts.queue {
		in.s.CancelRead(code)
	}
	ts.queue = nil
	for s := range ts.sending {
		s.CancelWrite(code)
	}
	if ts.reading != nil {
		ts.reading.CancelRead(code)
	}
	ts.wake()
	c.gcLocked(tag, ts)
	c.drainedLocked()
}

func lock(ctx context.Context, sem chan struct{}) error {
	select {
	case sem <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Send sends p as one message on its own QUIC stream.
func (c *conn) Send(ctx context.Context, tag transport.Tag, p []byte) error {
	if len(p) > c.e.cfg.MaxMessage {
		return opErr("send", c.peer, tag, fmt.Errorf("%w: %d bytes, limit %d", transport.ErrMessageSize, len(p), c.e.cfg.MaxMessage))
	}
	ts := c.use(tag)
	defer c.done(tag, ts)
	if err := lock(ctx, ts.sendSem); err != nil {
		return opErr("send", c.peer, tag, err)
	}
	defer func() { <-ts.sendSem }()
	if err := c.send(ctx, tag, ts, p); err != nil {
		return opErr("send", c.peer, tag, err)
	}
	return nil
}

func (c *conn) send(ctx context.Context, tag transport.Tag, ts *tagState, p []byte) error {
	c.mu.Lock()
	err := c.errLocked(tag)
	c.mu.Unlock()
	if err != nil {
		return err
	}
	// The tail of p is written behind (see writeBehind); take its slot
	// before the stream exists, so a full tag blocks here, within ctx.
	var tail []byte
	if len(p) > writeBehind {
		tail = p[len(p)-writeBehind:]
	}
	if len(tail) > 0 {
		if err := lock(ctx, ts.tails); err != nil {
			return err
		}
	}
	handedOff := false
	defer func() {
		if len(tail) > 0 && !handedOff {
			<-ts.tails
		}
	}()
	s, err := c.qc.OpenUniStreamSync(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return c.connErr(err)
	}
	c.sent.Add(1)
	c.mu.Lock()
	if err := c.errLocked(tag); err != nil {
		c.mu.Unlock()
		s.CancelWrite(codeAborted)
		return err
	}
	if ts.sending == nil {
		ts.sending = make(map[*quicgo.SendStream]struct{})
	}
	ts.sending[s] = struct{}{}
	c.mu.Unlock()
	defer func() {
		if !handedOff {
			c.mu.Lock()
			delete(ts.sending, s)
			c.mu.Unlock()
		}
	}()
	stop := context.AfterFunc(ctx, func() { s.CancelWrite(codeCanceled) })
	defer stop()

	var hb [64]byte
	hdr, err := wire.AppendFrame(hb[:0], &wire.DataHeader{Epoch: tag.Epoch, Op: tag.Op, Length: uint64(len(p))}, wire.MaxHeaderSize)
	if err != nil {
		return err
	}
	_, err = s.Write(hdr)
	if head := p[:len(p)-len(tail)]; err == nil && len(head) > 0 {
		_, err = s.Write(head)
	}
	if err == nil && len(tail) == 0 {
		err = s.Close()
	}
	if err == nil && len(tail) > 0 {
		if !stop() {
			return ctx.Err() // ctx ended: the stream is cancelled
		}
		buf := c.e.tailPool.Get().(*[]byte)
		*buf = append((*buf)[:0], tail...)
		c.mu.Lock()
		ts.users++ // the flusher keeps the tag's state (and ts.sending) alive
		c.mu.Unlock()
		handedOff = true
		c.e.wg.Go(func() { c.flushTail(tag, ts, s, buf) })
		return nil
	}
	if err != nil {
		// After a cancellation Close reports only "canceled stream"; the
		// stream's context holds the StreamError that says who and why.
		var se *quicgo.StreamError
		if cause := context.Cause(s.Context()); errors.As(cause, &se) {
			err = se
		}
		s.CancelWrite(codeCanceled)
		return c.streamErr(ctx, tag, ts, err)
	}
	return nil
}

// writeBehind is how many bytes at the end of a message longer than that
// Send copies and leaves to a flusher goroutine, returning as soon as the
// rest is packed. (Shorter messages are copied by quic-go's Write into one
// frame at once, so they need no flusher.)
// The caller's next Send then opens its stream while this one's tail is
// still being sent, so a link never idles between consecutive messages
// (the goroutine hand-offs of one Send → next Send take milliseconds on a
// loaded machine; 128 KiB last 26 ms at 40 Mbit/s). maxTails per tag bound
// the copies held: 512 KiB per tag in use.
const (
	writeBehind = 128 << 10
	maxTails    = 4
)

// flushTail writes the tail of a message and ends its stream. Nobody waits
// for its error: if the stream fails, the peer's Recv fails, and an abort
// or refusal reaches this tag's later calls through the control stream; the
// connection's end (close, idle timeout, FailPeer) ends the Write.
func (c *conn) flushTail(tag transport.Tag, ts *tagState, s *quicgo.SendStream, buf *[]byte) {
	_, err := s.Write(*buf)
	if err == nil {
		err = s.Close()
	}
	if err != nil {
		s.CancelWrite(codeCanceled)
		c.e.log.Debug("message tail not sent", "peer", c.peer, "tag", tag.String(), "err", err)
	}
	c.e.tailPool.Put(buf)
	c.mu.Lock()
	delete(ts.sending, s)
	ts.users--
	c.gcLocked(tag, ts)
	c.mu.Unlock()
	<-ts.tails
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
	var in inbound
	for {
		c.mu.Lock()
		if err := c.errLocked(tag); err != nil {
			c.mu.Unlock()
			return 0, err
		}
		if len(ts.queue) > 0 {
			in = ts.queue[0]
			ts.queue[0] = inbound{}
			ts.queue = ts.queue[1:]
			ts.reading = in.s
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
	defer func() {
		c.mu.Lock()
		ts.reading = nil
		c.drainedLocked()
		c.mu.Unlock()
	}()
	if in.n > len(p) {
		in.s.CancelRead(codeTooLarge)
		return 0, fmt.Errorf("%w: message of %d bytes, buffer of %d", transport.ErrMessageSize, in.n, len(p))
	}
	stop := context.AfterFunc(ctx, func() { in.s.CancelRead(codeCanceled) })
	defer stop()
	_, err := io.ReadFull(in.s, p[:in.n])
	if err == nil {
		// The stream must end here: a longer stream lies about its length.
		var extra [1]byte
		k, rerr := in.s.Read(extra[:])
		if k != 0 || rerr != io.EOF {
			if k != 0 {
				c.violation("message longer than its header's %d bytes", in.n)
				return 0, fmt.Errorf("%w: message longer than its header's %d bytes", transport.ErrProtocol, in.n)
			}
			err = rerr
		}
	}
	if err != nil {
		if err == io.ErrUnexpectedEOF || err == io.EOF {
			c.violation("message shorter than its header's %d bytes", in.n)
			return 0, fmt.Errorf("%w: message shorter than its header's %d bytes", transport.ErrProtocol, in.n)
		}
		return 0, c.streamErr(ctx, tag, ts, err)
	}
	return in.n, nil
}

// streamErr explains a failed stream read or write.
func (c *conn) streamErr(ctx context.Context, tag transport.Tag, ts *tagState, err error) error {
	c.mu.Lock()
	ferr := c.failed[tag]
	c.mu.Unlock()
	if ferr != nil {
		return ferr // aborted or refused: the recorded reason says why
	}
	if ctx.Err() != nil {
		return ctx.Err() // the call's own deadline or cancellation ended it
	}
	var se *quicgo.StreamError
	if !errors.As(err, &se) {
		return c.connErr(err)
	}
	if !se.Remote {
		if se.ErrorCode == codeEpoch {
			return fmt.Errorf("%w: epoch %d is below this endpoint's epoch %d", transport.ErrEpoch, tag.Epoch, c.e.epoch.Load())
		}
		return c.connErr(err)
	}
	switch se.ErrorCode {
	case codeAborted, codeCanceled:
		// The peer's abort reason travels on the control stream; give it
		// a moment to arrive.
		t := time.NewTimer(500 * time.Millisecond)
		defer t.Stop()
		for {
			c.mu.Lock()
			ferr := c.errLocked(tag)
			ch := ts.notify
			c.mu.Unlock()
			if ferr != nil {
				return ferr
			}
			select {
			case <-ch:
			case <-t.C:
				return &transport.AbortError{By: c.peer, Reason: "the peer cancelled the message (no reason received)"}
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	case codeTooLarge:
		return fmt.Errorf("%w: the peer's receive buffer was too small", transport.ErrMessageSize)
	case codeEpoch:
		return fmt.Errorf("%w: peer refused epoch %d", transport.ErrEpoch, tag.Epoch)
	}
	return c.connErr(err)
}

// connErr maps an error from a dead (or dying) connection.
func (c *conn) connErr(err error) error {
	select {
	case <-c.dead:
		return c.deadErr
	case <-c.qc.Context().Done():
		return closeCause(context.Cause(c.qc.Context()))
	default:
		return fmt.Errorf("%w: %v", transport.ErrPeerLost, err)
	}
}

// Abort fails tag on both sides: the peer learns the reason on the control
// stream, then every stream of the tag is cancelled.
func (c *conn) Abort(ctx context.Context, tag transport.Tag, reason error) error {
	why := "aborted"
	if reason != nil {
		why = reason.Error()
	}
	why = transport.TruncateReason(why)
	c.mu.Lock()
	c.failLocked(tag, &transport.AbortError{By: c.e.cfg.ID, Reason: why})
	if ts := c.tags[tag]; ts != nil {
		ts.wake()
	}
	c.mu.Unlock()
	err := c.writeControl(ctx, &wire.Control{Body: &wire.Control_Abort{Abort: &wire.Abort{Epoch: tag.Epoch, Op: tag.Op, Reason: why}}})
	c.mu.Lock()
	c.cancelLocked(tag, codeAborted)
	c.mu.Unlock()
	if err != nil {
		return opErr("abort", c.peer, tag, err)
	}
	return nil
}

// writeControl writes one control frame within ctx.
func (c *conn) writeControl(ctx context.Context, m *wire.Control) error {
	frame, err := wire.AppendFrame(nil, m, wire.MaxControlSize)
	if err != nil {
		return err
	}
	if err := lock(ctx, c.ctrlSem); err != nil {
		return err
	}
	defer func() { <-c.ctrlSem }()
	if d, ok := ctx.Deadline(); ok {
		c.ctrl.SetWriteDeadline(d)
	} else {
		c.ctrl.SetWriteDeadline(time.Now().Add(c.e.cfg.IdleTimeout))
	}
	if _, err := c.ctrl.Write(frame); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return c.connErr(err)
	}
	return nil
}

// dropBelow forgets unread messages and failures of epochs below epoch.
func (c *conn) dropBelow(epoch uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for tag := range c.tags {
		// Control protocols (membership, state sync) tag their own
		// epochs and outlive the data epochs.
		if tag.Epoch < epoch && tag.Op < transport.ControlOpBase {
			c.cancelLocked(tag, codeEpoch)
		}
	}
}

// drainedLocked acknowledges the peer's Goodbye once every message stream
// it announced has been accepted and consumed (read or discarded).
func (c *conn) drainedLocked() {
	if !c.peerBye || c.byeAcked || c.accepted < c.peerSent {
		return
	}
	for _, ts := range c.tags {
		if len(ts.queue) > 0 || ts.reading != nil {
			return
		}
	}
	c.byeAcked = true
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), c.e.cfg.Linger)
		defer cancel()
		c.writeControl(ctx, &wire.Control{Body: &wire.Control_GoodbyeAck{GoodbyeAck: &wire.GoodbyeAck{}}})
	}()
}

// goodbye announces a graceful close and waits, at most linger, until the
// peer has consumed everything we sent.
func (c *conn) goodbye(linger time.Duration) {
	if c.isDead() {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), linger)
	defer cancel()
	if err := c.writeControl(ctx, &wire.Control{Body: &wire.Control_Goodbye{Goodbye: &wire.Goodbye{DataStreams: c.sent.Load()}}}); err != nil {
		return
	}
	select {
	case <-c.byeAckRecvd:
	case <-c.dead:
	case <-ctx.Done():
		c.e.log.Debug("closing before the peer consumed all messages", "peer", c.peer)
	}
}
