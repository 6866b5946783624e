package tcp

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/ringtrain/ringtrain/transport"
)

// Recv receives the next message of tag into p.
func (c *conn) Recv(ctx context.Context, tag transport.Tag, p []byte) (int, error) {
	if l := c.route(tag); l != c {
		return l.Recv(ctx, tag, p)
	}
	c.calls.Add(1)
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
	if err := c.epochErr(tag); err != nil {
		return 0, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	var mine *inMsg // the message that has bytes in p
	for {
		if err := c.failed[tag]; err != nil {
			c.leaveLocked(tag, ts, mine)
			return 0, err
		}
		if mine != nil && (len(ts.queue) == 0 || ts.queue[0] != mine) {
			mine = nil // the peer cancelled it; wait for the next message
		}
		if len(ts.queue) > 0 {
			m := ts.queue[0]
			if m.total > len(p) {
				c.popLocked(tag, ts)
				return 0, fmt.Errorf("%w: message of %d bytes, buffer of %d", transport.ErrMessageSize, m.total, len(p))
			}
			mine = m
			for _, b := range m.staged {
				m.consumed += copy(p[m.consumed:], b)
				ts.owed += len(b)
			}
			c.unstage(m)
			if m.complete() {
				c.popLocked(tag, ts)
				return m.total, nil
			}
			ts.waiter = p // the reader now reads straight into p
			c.creditLocked(tag, ts)
		}
		if c.isDead() && !ts.reading {
			err := c.deadErr
			c.leaveLocked(tag, ts, mine)
			return 0, err
		}
		ch := ts.notify
		c.mu.Unlock()
		select {
		case <-ch:
			c.mu.Lock()
		case <-c.dead:
			c.mu.Lock()
		case <-ctx.Done():
			c.mu.Lock()
			c.leaveLocked(tag, ts, mine)
			return 0, ctx.Err()
		}
	}
}

// leaveLocked ends a Recv that returns without a message. A message it
// has begun to consume is dropped (what still arrives of it is
// discarded); one it has not touched stays for the next Recv.
func (c *conn) leaveLocked(tag transport.Tag, ts *tagState, mine *inMsg) {
	for ts.reading { // a sub-frame is landing in p: let it finish (≤ maxSubFrame)
		ch := ts.notify
		c.mu.Unlock()
		<-ch
		c.mu.Lock()
	}
	ts.waiter = nil
	if mine != nil && len(ts.queue) > 0 && ts.queue[0] == mine && mine.consumed > 0 {
		c.popLocked(tag, ts)
	}
}

// popLocked removes queue[0], delivered or dropped.
func (c *conn) popLocked(tag transport.Tag, ts *tagState) {
	m := ts.queue[0]
	ts.queue = ts.queue[1:]
	ts.waiter = nil
	ts.owed += m.got - m.consumed
	c.unstage(m)
	if !m.complete() {
		m.dropped = true
	}
	c.creditLocked(tag, ts)
}

// creditLocked returns consumed bytes to the sender: in batches while the
// tag has buffered data, all of it once the tag's buffer is empty (so a
// finished tag leaves no state on either end).
func (c *conn) creditLocked(tag transport.Tag, ts *tagState) {
	if ts.owed == 0 || (ts.owed < creditBatch && len(ts.queue) > 0) || c.isDead() {
		return
	}
	c.controlLocked(header{kind: kindCredit, tag: tag, length: uint32(ts.owed)}, nil)
	ts.unacked -= ts.owed
	ts.owed = 0
}

// readLoop is the connection's only reader: it decodes frames, keeps the
// per-tag receive state and copies payload into the buffer of a waiting
// Recv, or into the tag's staging buffers (bounded by tagWindow).
func (c *conn) readLoop() {
	defer close(c.readDone)
	defer c.e.peers.Forget(c)
	err := c.readFrames()
	c.mu.Lock()
	bye, byeErr := c.bye, c.byeErr
	c.mu.Unlock()
	switch {
	// A goodbye or idle frame ends only this lane: the bundle's other
	// lanes still read what came before theirs (lanes.go).
	case errors.Is(err, errPeerBye):
		c.killLane(fmt.Errorf("%w: peer %s closed its endpoint", transport.ErrPeerLost, c.peer))
	case errors.Is(err, errPeerIdle):
		// Not a loss: the peer closed the connection for idleness (its
		// Config.IdleClose); the next Conn dials again.
		c.killLane(fmt.Errorf("%w: peer %s closed the idle connection", transport.ErrClosed, c.peer))
	case errors.Is(err, transport.ErrProtocol):
		c.violation("%v", err)
	case bye != 0:
		c.killLane(byeErr)
	default:
		c.kill(fmt.Errorf("%w: connection to %s broke: %v", transport.ErrPeerLost, c.peer, err))
	}
}

var (
	errPeerBye  = errors.New("peer said goodbye")
	errPeerIdle = errors.New("peer closed the idle connection")
)

func (c *conn) readFrames() error {
	var hb [headerLen]byte
	scratch := make([]byte, 32<<10)
	for {
		if _, err := io.ReadFull(c.tc, hb[:]); err != nil {
			return err
		}
		h, err := decodeHeader(&hb, c.e.cfg.MaxMessage)
		if err != nil {
			return err
		}
		if l := laneOf(h.tag, c.nlanes); l != c.lane && h.kind != kindGoodbye && h.kind != kindIdle {
			return fmt.Errorf("%w: %s frame of %s on lane %d of %d, its lane is %d", transport.ErrProtocol, h.kind, h.tag, c.lane, c.nlanes, l)
		}
		switch h.kind {
		case kindBegin:
			err = c.onBegin(h)
		case kindData:
			err = c.onData(h, scratch)
		case kindCancel:
			c.onCancel(h.tag)
		case kindAbort:
			err = c.onAbort(h)
		case kindRefuse:
			c.mu.Lock()
			c.failLocked(h.tag, fmt.Errorf("%w: peer %s refused epoch %d", transport.ErrEpoch, c.peer, h.tag.Epoch))
			c.cancelSendsLocked(h.tag)
			c.mu.Unlock()
		case kindCredit:
			err = c.onCredit(h)
		case kindGoodbye:
			return errPeerBye
		case kindIdle:
			return errPeerIdle
		default:
			return fmt.Errorf("%w: unexpected %s frame", transport.ErrProtocol, h.kind)
		}
		if err != nil {
			return err
		}
	}
}

func (c *conn) onBegin(h header) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	ts := c.tagLocked(h.tag)
	if ts.cur != nil {
		return fmt.Errorf("%w: begin of a message on %s while one is arriving", transport.ErrProtocol, h.tag)
	}
	m := &inMsg{total: int(h.length)}
	c.arrived++
	switch {
	case c.epochErr(h.tag) != nil:
		m.dropped = true
		c.controlLocked(header{kind: kindRefuse, tag: h.tag}, nil)
	case c.failed[h.tag] != nil:
		m.dropped = true // aborted: discard
	default:
		ts.queue = append(ts.queue, m)
		ts.wake()
	}
	if !m.complete() {
		ts.cur = m
	}
	c.gcLocked(h.tag, ts)
	return nil
}

func (c *conn) onData(h header, scratch []byte) error {
	n := int(h.length)
	c.mu.Lock()
	ts := c.tags[h.tag]
	if ts == nil || ts.cur == nil {
		c.mu.Unlock()
		return fmt.Errorf("%w: data on %s outside a message", transport.ErrProtocol, h.tag)
	}
	m := ts.cur
	if n > m.total-m.got || ts.unacked+n > tagWindow {
		c.mu.Unlock()
		return fmt.Errorf("%w: %d data bytes on %s exceed the message (%d of %d) or the window (%d of %d)",
			transport.ErrProtocol, n, h.tag, m.got, m.total, ts.unacked, tagWindow)
	}
	ts.unacked += n
	var dst []byte
	switch {
	case m.dropped:
		ts.owed += n
	case ts.waiter != nil && len(ts.queue) > 0 && ts.queue[0] == m && m.consumed == m.got:
		dst = ts.waiter[m.got : m.got+n]
		ts.reading = true
	default:
		dst = c.stageBuf(n)
	}
	c.mu.Unlock()

	var err error
	if dst == nil {
		err = discard(c.tc, n, scratch)
	} else {
		_, err = io.ReadFull(c.tc, dst)
	}

	c.mu.Lock()
	defer c.mu.Unlock()
	direct := ts.reading
	ts.reading = false
	if err != nil {
		ts.wake()
		return err
	}
	m.got += n
	switch {
	case m.dropped:
		if dst != nil {
			ts.owed += n // dropped while it arrived
			if !direct {
				c.recycle(dst)
			}
		}
	case direct:
		m.consumed += n
		ts.owed += n
	default:
		m.staged = append(m.staged, dst)
	}
	if m.complete() {
		ts.cur = nil
	}
	ts.wake()
	c.creditLocked(h.tag, ts)
	c.gcLocked(h.tag, ts)
	return nil
}

func discard(r io.Reader, n int, scratch []byte) error {
	for n > 0 {
		k, err := r.Read(scratch[:min(n, len(scratch))])
		n -= k
		if err != nil && n > 0 {
			return err
		}
	}
	return nil
}

// onCancel drops the tag's incomplete message: its sender gave it up.
func (c *conn) onCancel(tag transport.Tag) {
	c.mu.Lock()
	defer c.mu.Unlock()
	ts := c.tags[tag]
	if ts == nil || ts.cur == nil {
		return // nothing of it arrived, or the message was complete
	}
	m := ts.cur
	ts.cur = nil
	for i, q := range ts.queue {
		if q == m {
			ts.queue = append(ts.queue[:i], ts.queue[i+1:]...)
			if i == 0 {
				ts.waiter = nil
			}
			break
		}
	}
	if !m.dropped {
		ts.owed += m.got - m.consumed
		m.dropped = true
		c.unstage(m)
	}
	ts.wake()
	c.creditLocked(tag, ts)
	c.gcLocked(tag, ts)
}

func (c *conn) onAbort(h header) error {
	p := make([]byte, h.length) // ≤ maxControlPayload (decodeHeader)
	if _, err := io.ReadFull(c.tc, p); err != nil {
		return err
	}
	reason := transport.TruncateReason(string(p))
	c.mu.Lock()
	defer c.mu.Unlock()
	c.failLocked(h.tag, &transport.AbortError{By: c.peer, Reason: reason})
	if ts := c.tags[h.tag]; ts != nil {
		c.dropQueueLocked(h.tag, ts)
		if ts.cur != nil {
			ts.cur.dropped = true
		}
		c.cancelSendsLocked(h.tag)
		c.gcLocked(h.tag, ts)
	}
	return nil
}

func (c *conn) onCredit(h header) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	ts := c.tags[h.tag]
	if ts == nil || ts.credit+int(h.length) > tagWindow {
		return fmt.Errorf("%w: credit of %d bytes on %s beyond what was sent", transport.ErrProtocol, h.length, h.tag)
	}
	ts.credit += int(h.length)
	ts.wake()
	c.gcLocked(h.tag, ts)
	return nil
}

// stageBuf returns a buffer for n bytes of a message that arrives before
// its Recv. Full sub-frames, the bulk of large messages, come from the
// endpoint's pool (Endpoint.chunks); smaller ones are allocated to size,
// so that staged memory stays what the tag's window allows.
func (c *conn) stageBuf(n int) []byte {
	if n != maxSubFrame {
		return make([]byte, n)
	}
	if p, ok := c.e.chunks.Get().(*[maxSubFrame]byte); ok {
		return p[:]
	}
	return new([maxSubFrame]byte)[:]
}

// recycle returns a buffer from stageBuf that nothing refers to any more.
func (c *conn) recycle(b []byte) {
	if len(b) == maxSubFrame {
		c.e.chunks.Put((*[maxSubFrame]byte)(b))
	}
}

// unstage recycles m's staged buffers (copied out or dropped) and forgets
// them.
func (c *conn) unstage(m *inMsg) {
	for _, b := range m.staged {
		c.recycle(b)
	}
	m.staged = nil
}
