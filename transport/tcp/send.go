package tcp

import (
	"context"
	"fmt"

	"github.com/ringtrain/ringtrain/transport"
)

// sendReq is a piece of one message handed to the writer: the begin frame
// (first piece only) and up to the tag's credit of payload. The writer
// cuts it into sub-frames and interleaves it with the other requests.
type sendReq struct {
	tag   transport.Tag
	begin bool // write the begin frame first
	total int  // the message's size, for the begin frame
	p     []byte
	off   int  // bytes of p written; guarded by conn.mu
	busy  bool // the writer is writing from p now; guarded by conn.mu
	gone  bool // cancelled: the writer drops it after the current sub-frame
	ok    bool // written completely; set when done is closed
	done  chan struct{}
}

// roundBudget bounds the payload one writer round sends before it flushes
// and picks up new requests.
const roundBudget = 1 << 20

// smallPayload: payloads up to this size are copied next to their header,
// larger ones go to TLS as they are (one extra small record per sub-frame
// costs less than copying it).
const smallPayload = 4 << 10

// Send delivers p as one message of tag.
func (c *conn) Send(ctx context.Context, tag transport.Tag, p []byte) error {
	if l := c.route(tag); l != c {
		return l.Send(ctx, tag, p)
	}
	c.calls.Add(1)
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
	if len(p) > c.e.cfg.MaxMessage {
		return fmt.Errorf("%w: message of %d bytes, limit %d", transport.ErrMessageSize, len(p), c.e.cfg.MaxMessage)
	}
	if err := c.epochErr(tag); err != nil {
		return err
	}
	off, begun := 0, false
	for {
		c.mu.Lock()
		if err := c.errLocked(tag); err != nil {
			if begun {
				c.controlLocked(header{kind: kindCancel, tag: tag}, nil)
			}
			c.mu.Unlock()
			return err
		}
		if begun && off == len(p) {
			c.mu.Unlock()
			return nil
		}
		if c.bye != 0 {
			err := c.byeErr
			c.mu.Unlock()
			return err
		}
		k := min(ts.credit, len(p)-off)
		if k == 0 && begun {
			ch := ts.notify
			c.mu.Unlock()
			select {
			case <-ch:
				continue
			case <-c.dead:
				continue
			case <-ctx.Done():
				c.mu.Lock()
				c.controlLocked(header{kind: kindCancel, tag: tag}, nil)
				c.mu.Unlock()
				return ctx.Err()
			}
		}
		ts.credit -= k
		r := &sendReq{tag: tag, begin: !begun, total: len(p), p: p[off : off+k], done: make(chan struct{})}
		c.reqs = append(c.reqs, r)
		c.kick()
		c.mu.Unlock()
		begun = true
		var cerr error
		select {
		case <-r.done:
			if !r.ok {
				c.mu.Lock()
				if cerr = c.errLocked(tag); cerr == nil {
					cerr = transport.ErrClosed
				}
				c.mu.Unlock()
			}
		case <-c.dead:
			cerr = c.deadErr
		case <-ctx.Done():
			cerr = ctx.Err()
		}
		if cerr != nil && !c.cancelReq(r) {
			cerr = nil // it was written completely after all
		}
		if cerr != nil {
			c.mu.Lock()
			if !c.isDead() {
				c.controlLocked(header{kind: kindCancel, tag: tag}, nil)
			}
			c.mu.Unlock()
			return cerr
		}
		off += k
	}
}

// cancelReq withdraws r from the writer, waiting if the writer is writing
// from it at this moment (one sub-frame), so that the caller's buffer is
// not read once Send returns. The credit of what was not sent returns to
// the tag. It reports false if r was written completely.
func (c *conn) cancelReq(r *sendReq) bool {
	c.mu.Lock()
	select {
	case <-r.done:
		c.mu.Unlock()
		return !r.ok
	default:
	}
	r.gone = true
	if r.busy {
		c.mu.Unlock()
		<-r.done // the writer finishes the sub-frame, then completes r
		return !r.ok
	}
	c.removeReqLocked(r)
	c.mu.Unlock()
	return true
}

// removeReqLocked takes r out of the writer's queue, completes it and
// gives the credit of its unsent bytes back to its tag.
func (c *conn) removeReqLocked(r *sendReq) {
	for i, q := range c.reqs {
		if q == r {
			c.reqs = append(c.reqs[:i], c.reqs[i+1:]...)
			break
		}
	}
	if ts := c.tags[r.tag]; ts != nil {
		ts.credit += len(r.p) - r.off
		ts.wake()
	}
	r.ok = r.off == len(r.p) && !r.begin
	close(r.done)
}

// cancelSendsLocked withdraws tag's queued request (its Send then fails
// with the tag's recorded error).
func (c *conn) cancelSendsLocked(tag transport.Tag) {
	for _, r := range c.reqs {
		if r.tag == tag && !r.gone {
			r.gone = true
			if !r.busy {
				c.removeReqLocked(r)
			}
			break // one Send per tag at a time
		}
	}
	if ts := c.tags[tag]; ts != nil {
		ts.wake()
	}
}

// piece is one sub-frame of a request chosen for a writer round.
type piece struct {
	r     *sendReq
	begin bool
	off   int
	n     int
}

// writeLoop is the connection's only writer. Each round it takes the
// queued control frames and up to roundBudget of payload, one sub-frame
// per request in turn (so tags interleave), writes them through TLS into
// the socket buffer and flushes once.
func (c *conn) writeLoop() {
	var ctrl, scratch []byte
	var pieces []piece
	for {
		c.mu.Lock()
		for len(c.ctrl) == 0 && len(c.reqs) == 0 && c.bye == 0 && !c.isDead() {
			c.mu.Unlock()
			select {
			case <-c.wake:
			case <-c.dead:
			}
			c.mu.Lock()
		}
		if c.isDead() {
			c.failReqsLocked()
			c.mu.Unlock()
			return
		}
		ctrl, c.ctrl = c.ctrl, ctrl[:0]
		pieces = pieces[:0]
		budget := roundBudget
		for _, r := range c.reqs {
			if r.gone || budget <= 0 {
				continue
			}
			n := min(maxSubFrame, len(r.p)-r.off)
			pieces = append(pieces, piece{r: r, begin: r.begin, off: r.off, n: n})
			r.busy = true
			budget -= n
		}
		var bye kind // the stream's last frame, once nothing is left to send
		if len(c.reqs) == 0 {
			bye = c.bye
		}
		c.mu.Unlock()

		err := c.writeRound(ctrl, pieces, &scratch, bye)

		c.mu.Lock()
		for _, pc := range pieces {
			r := pc.r
			r.busy = false
			if err == nil {
				r.off += pc.n
				r.begin = false
			}
			if r.off == len(r.p) || r.gone || err != nil {
				c.removeReqLocked(r)
			}
		}
		if err != nil || bye != 0 {
			c.failReqsLocked()
			c.mu.Unlock()
			if err != nil {
				c.kill(fmt.Errorf("%w: writing to peer %s: %v", transport.ErrPeerLost, c.peer, err))
			}
			return
		}
		c.mu.Unlock()
	}
}

func (c *conn) failReqsLocked() {
	for len(c.reqs) > 0 {
		r := c.reqs[0]
		r.gone = true
		c.removeReqLocked(r)
	}
}

// writeRound writes one round's frames and flushes them; bye, if not
// zero, ends the stream with a frame of that kind (kindGoodbye or
// kindIdle) and a write shutdown.
func (c *conn) writeRound(ctrl []byte, pieces []piece, scratch *[]byte, bye kind) error {
	buf := append((*scratch)[:0], ctrl...)
	for _, pc := range pieces {
		if pc.begin {
			buf = appendHeader(buf, header{kind: kindBegin, tag: pc.r.tag, length: uint32(pc.r.total)})
		}
		if pc.n == 0 {
			continue
		}
		buf = appendHeader(buf, header{kind: kindData, tag: pc.r.tag, length: uint32(pc.n)})
		payload := pc.r.p[pc.off : pc.off+pc.n]
		if pc.n <= smallPayload {
			buf = append(buf, payload...)
			continue
		}
		if _, err := c.tc.Write(buf); err != nil {
			return err
		}
		buf = buf[:0]
		if _, err := c.tc.Write(payload); err != nil {
			return err
		}
	}
	if bye != 0 {
		buf = appendHeader(buf, header{kind: bye})
	}
	*scratch = buf[:0]
	if len(buf) > 0 {
		if _, err := c.tc.Write(buf); err != nil {
			return err
		}
	}
	if err := c.bc.flush(); err != nil {
		return err
	}
	if bye != 0 {
		return c.raw.CloseWrite()
	}
	return nil
}
