package tcp

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ringtrain/ringtrain/transport"
)

// maxAborted bounds how many aborted or refused tags a conn remembers (so
// that late calls on them still fail) before forgetting the oldest.
const maxAborted = 4096

// tagWindow is the per-tag flow-control window: the bytes of a tag a
// sender may have in flight or buffered at the receiver before the
// receiver hands credit back (see the package comment).
const tagWindow = 4 << 20

// creditBatch is how much consumed data a receiver collects before it
// returns credit while more of the tag is still buffered; once a tag's
// buffer is empty it returns everything owed at once.
const creditBatch = 512 << 10

// conn is the TLS connection to one peer. It implements transport.Conn.
type conn struct {
	e          *Endpoint
	peer       string
	raw        *net.TCPConn
	bc         *bufConn
	tc         *tls.Conn
	dialedByMe bool
	peerInc    uint64
	lane       int     // this connection's index in its bundle (lanes.go)
	nlanes     int     // connections in the bundle
	b          *bundle // the bundle's lanes; nil when nlanes = 1

	startOnce sync.Once
	killOnce  sync.Once
	dead      chan struct{} // closed when the connection ended
	deadErr   error         // why; set before dead is closed
	wake      chan struct{} // tells the writer there is work (cap 1)
	readDone  chan struct{} // closed when the reader goroutine ends

	mu      sync.Mutex
	tags    map[transport.Tag]*tagState
	failed  map[transport.Tag]error // aborted or refused tags
	failedQ []transport.Tag         // insertion order of failed, for eviction
	ctrl    []byte                  // encoded control frames the writer sends next
	reqs    []*sendReq              // data the writer sends, round robin
	bye     kind                    // kindGoodbye or kindIdle once the writer is to end the stream with it
	byeErr  error                   // what calls report once the connection ends after bye
	arrived uint64                  // messages begun by the peer: traffic, for IdleClose (idle.go)
	calls   atomic.Uint64           // Send and Recv calls begun: traffic, for IdleClose
}

// tagState is the state of one tag on a conn; it exists while a call uses
// the tag, messages of it are buffered, or credit of it is outstanding in
// either direction, so finished operations leave nothing behind.
type tagState struct {
	sendSem chan struct{} // one Send at a time keeps message order = call order
	recvSem chan struct{}
	users   int
	notify  chan struct{} // closed (and replaced) on any change of the tag

	// Send side.
	credit int // bytes we may still send on the tag

	// Receive side.
	queue   []*inMsg // messages received (the last one maybe still arriving)
	cur     *inMsg   // the message the peer is sending now, if incomplete
	unacked int      // bytes received that credit was not returned for
	owed    int      // bytes of unacked consumed (read or dropped)
	waiter  []byte   // the buffer of a Recv waiting for queue[0], if any
	reading bool     // the reader is copying a sub-frame into waiter
}

// inMsg is one message arriving on a tag.
type inMsg struct {
	total    int      // payload size announced by its begin frame
	got      int      // payload bytes received so far
	consumed int      // bytes of got delivered into a Recv's buffer
	staged   [][]byte // bytes got-consumed, buffered in arrival order
	dropped  bool     // discard what still arrives of it
}

func (m *inMsg) complete() bool { return m.got == m.total }

var _ transport.Conn = (*conn)(nil)

func newConn(e *Endpoint, peer string, raw *net.TCPConn, bc *bufConn, tc *tls.Conn, dialedByMe bool, peerInc uint64) *conn {
	return &conn{
		e: e, peer: peer, raw: raw, bc: bc, tc: tc, dialedByMe: dialedByMe, peerInc: peerInc, nlanes: 1,
		dead:     make(chan struct{}),
		wake:     make(chan struct{}, 1),
		readDone: make(chan struct{}),
		tags:     make(map[transport.Tag]*tagState),
		failed:   make(map[transport.Tag]error),
	}
}

// Start runs the reader and writer of every lane (peers.Conn); they end
// once their lane dies, and Endpoint.Close waits for them.
func (c *conn) Start() {
	for _, l := range c.all() {
		l.startOnce.Do(func() {
			c.e.wg.Go(l.readLoop)
			c.e.wg.Go(l.writeLoop)
		})
	}
}

// Peer is the remote node's ID.
func (c *conn) Peer() string { return c.peer }

// Dead, Origin, Replaced and Discard implement peers.Conn. A bundle is
// dead once any of its lanes is.
func (c *conn) Dead() bool {
	for _, l := range c.all() {
		if l.isDead() {
			return true
		}
	}
	return false
}

func (c *conn) Origin() (dialedByMe bool, peerIncarnation uint64) { return c.dialedByMe, c.peerInc }

func (c *conn) Replaced() {
	c.kill(fmt.Errorf("%w: connection replaced by a newer one", transport.ErrPeerLost))
}

func (c *conn) Discard() { c.kill(transport.ErrClosed) }

func (c *conn) isDead() bool {
	select {
	case <-c.dead:
		return true
	default:
		return false
	}
}

// kill ends the connection, every lane of its bundle, with err: every
// pending and later call fails with it, and the sockets are closed, so the
// peer sees the loss at once. It may be called with the peer table's lock
// held (Replaced).
func (c *conn) kill(err error) {
	if c.b != nil {
		c.b.kill(err)
		return
	}
	c.killLane(err)
}

// killLane ends this lane alone (a goodbye or idle frame ends only its
// own lane; lanes.go).
func (c *conn) killLane(err error) {
	c.killOnce.Do(func() {
		c.mu.Lock()
		c.deadErr = err
		close(c.dead)
		for _, ts := range c.tags {
			ts.wake()
		}
		c.mu.Unlock()
		c.raw.Close()
	})
}

// violation closes the connection because the peer broke the protocol.
func (c *conn) violation(format string, args ...any) {
	err := fmt.Errorf("%w: peer %s: %s", transport.ErrProtocol, c.peer, fmt.Sprintf(format, args...))
	c.e.log.Warn("closing a connection", "peer", c.peer, "err", err)
	c.kill(err)
}

func (ts *tagState) wake() {
	close(ts.notify)
	ts.notify = make(chan struct{})
}

func newTagState() *tagState {
	return &tagState{
		sendSem: make(chan struct{}, 1),
		recvSem: make(chan struct{}, 1),
		notify:  make(chan struct{}),
		credit:  tagWindow,
	}
}

// tagLocked returns tag's state, making it if needed.
func (c *conn) tagLocked(tag transport.Tag) *tagState {
	ts := c.tags[tag]
	if ts == nil {
		ts = newTagState()
		c.tags[tag] = ts
	}
	return ts
}

// use pins tag's state for one call; done unpins it.
func (c *conn) use(tag transport.Tag) *tagState {
	c.mu.Lock()
	defer c.mu.Unlock()
	ts := c.tagLocked(tag)
	ts.users++
	return ts
}

func (c *conn) done(tag transport.Tag, ts *tagState) {
	c.mu.Lock()
	ts.users--
	c.gcLocked(tag, ts)
	c.mu.Unlock()
}

// gcLocked forgets tag's state once nothing refers to it.
func (c *conn) gcLocked(tag transport.Tag, ts *tagState) {
	if ts.users == 0 && len(ts.queue) == 0 && ts.cur == nil && ts.unacked == 0 && ts.credit == tagWindow && c.tags[tag] == ts {
		delete(c.tags, tag)
	}
}

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

// dropQueueLocked discards tag's buffered messages (the credit for them
// goes back to the peer) and what still arrives of the current one.
func (c *conn) dropQueueLocked(tag transport.Tag, ts *tagState) {
	for _, m := range ts.queue {
		ts.owed += m.got - m.consumed
		c.unstage(m)
		m.dropped = true
	}
	ts.queue = nil
	c.creditLocked(tag, ts)
	ts.wake()
}

// controlLocked queues a control frame for the writer.
func (c *conn) controlLocked(h header, payload []byte) {
	c.ctrl = appendHeader(c.ctrl, h)
	c.ctrl = append(c.ctrl, payload...)
	c.kick()
}

func (c *conn) kick() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

func opErr(op, peer string, tag transport.Tag, err error) error {
	return &transport.OpError{Op: op, Peer: peer, Tag: tag, Err: err}
}

func lock(ctx context.Context, sem chan struct{}) error {
	select {
	case sem <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// epochErr refuses data tags of epochs below the endpoint's.
func (c *conn) epochErr(tag transport.Tag) error {
	if ep := c.e.epoch.Load(); tag.Op < transport.ControlOpBase && tag.Epoch < ep {
		return fmt.Errorf("%w: epoch %d is below this endpoint's epoch %d", transport.ErrEpoch, tag.Epoch, ep)
	}
	return nil
}

// Abort fails tag on both sides: the peer learns the reason in an abort
// frame; local calls on the tag return at once.
func (c *conn) Abort(ctx context.Context, tag transport.Tag, reason error) error {
	if l := c.route(tag); l != c {
		return l.Abort(ctx, tag, reason)
	}
	why := "aborted"
	if reason != nil {
		why = reason.Error()
	}
	why = transport.TruncateReason(why)
	c.mu.Lock()
	if c.isDead() {
		err := c.deadErr
		c.mu.Unlock()
		return opErr("abort", c.peer, tag, err)
	}
	c.failLocked(tag, &transport.AbortError{By: c.e.cfg.ID, Reason: why})
	if ts := c.tags[tag]; ts != nil {
		c.dropQueueLocked(tag, ts)
		c.cancelSendsLocked(tag)
	}
	c.controlLocked(header{kind: kindAbort, tag: tag, length: uint32(len(why))}, []byte(why))
	c.mu.Unlock()
	if err := ctx.Err(); err != nil {
		return opErr("abort", c.peer, tag, err)
	}
	return nil
}

// dropBelow forgets unread messages of data epochs below epoch; control
// protocols (Op ≥ transport.ControlOpBase) tag their own epochs and
// outlive the data epochs.
func (c *conn) dropBelow(epoch uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for tag, ts := range c.tags {
		if tag.Epoch < epoch && tag.Op < transport.ControlOpBase {
			c.dropQueueLocked(tag, ts)
			if ts.cur != nil {
				ts.cur.dropped = true
			}
			c.gcLocked(tag, ts)
		}
	}
}

// goodbye ends the connection gracefully: on every lane the writer sends
// what is queued, then a frame of kind k (kindGoodbye or kindIdle), and the
// peer, having read everything, closes its end; goodbye waits for that at
// most linger. Calls then fail with err.
func (c *conn) goodbye(k kind, err error, linger time.Duration) {
	lanes := c.all()
	for _, l := range lanes {
		l.mu.Lock()
		if l.bye == 0 {
			l.bye, l.byeErr = k, err
		}
		if l == c {
			err = l.byeErr
		}
		l.kick()
		l.mu.Unlock()
	}
	t := time.NewTimer(linger)
	defer t.Stop()
	for _, l := range lanes {
		select {
		case <-l.readDone:
		case <-l.dead:
		case <-t.C:
			c.e.log.Debug("closing before the peer read our goodbye", "peer", c.peer, "frame", k)
			c.kill(err)
			return
		}
	}
	c.kill(err)
}
