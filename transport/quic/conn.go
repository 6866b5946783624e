package quic

import (
	"context"
	"errors"
	"fmt"
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

	mu          sync.Mutex
	tags        map[transport.Tag]*tagState
	failed      map[transport.Tag]error // aborted or refused tags
	failedQ     []transport.Tag         // insertion order of failed, for eviction
	closeErr    error                   // first close reason; guarded by mu
	openStreams int                     // send streams open (tagState.out); guarded by mu
	idleKick    chan struct{}           // tells closer a send stream went idle
	calls       atomic.Uint64           // Send and Recv calls begun: traffic, for IdleClose (idle.go)

	// Graceful close (see wire.Goodbye).
	sent        atomic.Uint64 // data streams opened toward the peer
	accepted    uint64        // data streams accepted from the peer; guarded by mu
	peerBye     bool          // the peer sent Goodbye; guarded by mu
	peerSent    uint64        // its announced stream count; guarded by mu
	byeAcked    bool          // we sent GoodbyeAck; guarded by mu
	byeAckRecvd chan struct{} // closed when the peer acknowledged our Goodbye
	byeAckOnce  sync.Once
}

// tagState is the per-tag state; it exists only while a call uses the tag,
// its send stream is open or the peer's streams of it are, so finished
// operations leave nothing behind once their streams close.
type tagState struct {
	sendSem  chan struct{} // one Send at a time keeps message order = call order
	recvSem  chan struct{}
	out      *quicgo.SendStream // the tag's stream toward the peer, if open
	lastSend time.Time          // when the last call on the tag ended
	queue    []*inStream        // the peer's streams of this tag, in stream-ID order
	notify   chan struct{}      // closed (and replaced) on arrival or failure
	reading  *inStream          // the stream a Recv reads a payload from
	users    int
}

var _ transport.Conn = (*conn)(nil)

func newConn(e *Endpoint, peer string, qc *quicgo.Conn, ctrl *quicgo.Stream, dialedByMe bool, peerInc uint64) *conn {
	return &conn{
		e: e, peer: peer, qc: qc, ctrl: ctrl, dialedByMe: dialedByMe, peerInc: peerInc,
		dead:        make(chan struct{}),
		ctrlSem:     make(chan struct{}, 1),
		byeAckRecvd: make(chan struct{}),
		idleKick:    make(chan struct{}, 1),
		tags:        make(map[transport.Tag]*tagState),
		failed:      make(map[transport.Tag]error),
	}
}

// Start launches the connection's readers once it is installed
// (peers.Conn).
func (c *conn) Start() {
	c.startOnce.Do(func() {
		c.e.wg.Go(c.controlLoop)
		c.e.wg.Go(c.dataLoop)
		c.e.wg.Go(c.closer)
		c.e.wg.Go(func() {
			<-c.qc.Context().Done()
			c.markDead(closeCause(context.Cause(c.qc.Context())))
			c.e.peers.Forget(c)
		})
	})
}

func (c *conn) Peer() string { return c.peer }

// Dead, Origin, Replaced and Discard implement peers.Conn.
func (c *conn) Dead() bool { return c.isDead() }

func (c *conn) Origin() (dialedByMe bool, peerIncarnation uint64) { return c.dialedByMe, c.peerInc }

// Replaced runs with the peer table's lock held; closing waits for
// quic-go, so it runs on its own.
func (c *conn) Replaced() {
	go c.close(codeReplaced, "replaced by a newer connection", fmt.Errorf("%w: connection replaced by a newer one", transport.ErrPeerLost))
}

func (c *conn) Discard() { c.close(codeClosed, "endpoint closed", transport.ErrClosed) }

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
	c.calls.Add(1)
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
			notify:  make(chan struct{}),
		}
		c.tags[tag] = ts
	}
	return ts
}

func (c *conn) done(tag transport.Tag, ts *tagState) {
	c.mu.Lock()
	ts.users--
	idle := ts.users == 0 && ts.out != nil
	if idle {
		ts.lastSend = time.Now()
	}
	c.gcLocked(tag, ts)
	c.mu.Unlock()
	if idle {
		select {
		case c.idleKick <- struct{}{}:
		default: // the closer is already told
		}
	}
}

func (c *conn) gcLocked(tag transport.Tag, ts *tagState) {
	if ts.users == 0 && len(ts.queue) == 0 && ts.out == nil && c.tags[tag] == ts {
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
	for _, st := range ts.queue {
		st.s.CancelRead(code)
		close(st.gone)
	}
	ts.queue = nil
	if s := ts.out; s != nil {
		s.CancelWrite(code)
		c.dropOutLocked(ts, s)
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

// drainedLocked acknowledges the peer's Goodbye once every data stream it
// announced has been accepted and consumed: read to its end, or discarded.
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

// goodbye ends every send stream, announces a graceful close and waits, at
// most linger, until the peer has consumed everything we sent.
func (c *conn) goodbye(linger time.Duration) {
	if c.isDead() {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), linger)
	defer cancel()
	c.finishSends(ctx)
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
