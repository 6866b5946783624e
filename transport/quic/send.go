package quic

import (
	"context"
	"errors"
	"fmt"
	"time"

	quicgo "github.com/quic-go/quic-go"

	"github.com/ringtrain/ringtrain/internal/wire"
	"github.com/ringtrain/ringtrain/transport"
)

// writeBehind is how many bytes at the end of a message Send leaves queued
// in quic-go (copied with TryWriteAll) instead of waiting for them to be
// packed. Send returns while they are still being sent, so the caller's next
// message is queued on the same stream behind them and a paced link never
// idles between consecutive messages (the hand-off from one Send to the next
// takes milliseconds on a loaded machine; 128 KiB last 26 ms at 40 Mbit/s).
// Messages up to this size are queued whole. A stream's queued bytes are
// bounded by its flow-control window: without credit, Send blocks instead.
const writeBehind = 128 << 10

// Send-stream lifetime. A tag's stream stays open while the tag is in use
// and idleStreamClose after its last Send, so the messages of one operation
// share one stream; then it is closed (FIN), which frees the peer's reader.
// At most maxOpenStreams per connection stay open; beyond that the least
// recently used idle one is closed first.
const (
	idleStreamClose = 250 * time.Millisecond
	maxOpenStreams  = 256
)

// Send sends p as one message on the tag's stream.
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
	s := ts.out
	c.mu.Unlock()
	if err != nil {
		return err
	}
	if s == nil {
		if s, err = c.openOut(ctx, tag, ts); err != nil {
			return err
		}
	}
	var hb [64]byte
	hdr, err := wire.AppendFrame(hb[:0], &wire.DataHeader{Epoch: tag.Epoch, Op: tag.Op, Length: uint64(len(p))}, wire.MaxHeaderSize)
	if err != nil {
		return err
	}
	// Everything before this message is delivered even if the stream is
	// reset while this one is written (RESET_STREAM_AT): a cancelled Send
	// loses only its own message.
	s.SetReliableBoundary()
	stop := context.AfterFunc(ctx, func() { s.CancelWrite(codeCanceled) })
	cut := max(len(p)-writeBehind, 0)
	head, tail := p[:cut], p[cut:]
	err = queue(s, hdr)
	if err == nil && len(head) > 0 {
		_, err = s.Write(head)
	}
	if err == nil && len(tail) > 0 {
		err = queue(s, tail)
	}
	if !stop() && err == nil {
		err = ctx.Err() // ctx ended as the message went out: the stream is reset
	}
	if err == nil {
		return nil
	}
	// The stream is broken (reset by us or the peer); the next Send opens
	// another.
	c.mu.Lock()
	c.dropOutLocked(ts, s)
	c.mu.Unlock()
	var se *quicgo.StreamError
	if cause := context.Cause(s.Context()); errors.As(cause, &se) {
		err = se // Write reports only "canceled stream"; the cause says who and why
	}
	s.CancelWrite(codeCanceled)
	return c.streamErr(ctx, tag, ts, err)
}

// queue hands b to the stream without waiting for it to be packed when flow
// control allows (quic-go copies it), else writes it.
func queue(s *quicgo.SendStream, b []byte) error {
	err := s.TryWriteAll(b)
	if errors.Is(err, quicgo.ErrWouldBlock) {
		_, err = s.Write(b)
	}
	return err
}

// openOut opens the tag's stream, closing the least recently used idle
// stream first when maxOpenStreams are open.
func (c *conn) openOut(ctx context.Context, tag transport.Tag, ts *tagState) (*quicgo.SendStream, error) {
	c.mu.Lock()
	if c.openStreams >= maxOpenStreams {
		c.closeIdleLocked(time.Time{}, 1)
	}
	c.mu.Unlock()
	s, err := c.qc.OpenUniStreamSync(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, c.connErr(err)
	}
	c.sent.Add(1)
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.errLocked(tag); err != nil {
		s.CancelWrite(codeAborted)
		return nil, err
	}
	ts.out = s
	c.openStreams++
	return s, nil
}

// dropOutLocked forgets the tag's stream s (already closed or reset).
func (c *conn) dropOutLocked(ts *tagState, s *quicgo.SendStream) {
	if ts.out == s && s != nil {
		ts.out = nil
		c.openStreams--
	}
}

// closeIdleLocked closes (FIN) the streams of tags nobody uses: those idle
// since before cutoff, or, with a zero cutoff, the n least recently used.
// It returns when the next idle stream is due to close (zero: none open).
func (c *conn) closeIdleLocked(cutoff time.Time, n int) time.Time {
	for ; n > 0 && cutoff.IsZero(); n-- {
		var oldest transport.Tag
		var ots *tagState
		for tag, ts := range c.tags {
			if ts.out != nil && ts.users == 0 && (ots == nil || ts.lastSend.Before(ots.lastSend)) {
				oldest, ots = tag, ts
			}
		}
		if ots == nil {
			break
		}
		c.finLocked(oldest, ots)
	}
	var next time.Time
	for tag, ts := range c.tags {
		if ts.out == nil || ts.users > 0 {
			continue
		}
		if !cutoff.IsZero() && !ts.lastSend.After(cutoff) {
			c.finLocked(tag, ts)
			continue
		}
		if due := ts.lastSend.Add(idleStreamClose); next.IsZero() || due.Before(next) {
			next = due
		}
	}
	return next
}

// finLocked ends the tag's stream after the bytes queued on it.
func (c *conn) finLocked(tag transport.Tag, ts *tagState) {
	s := ts.out
	c.dropOutLocked(ts, s)
	s.Close() // only fails on a stream already reset, which needs no FIN
	c.gcLocked(tag, ts)
}

// closer closes idle send streams (see idleStreamClose) until the
// connection ends.
func (c *conn) closer() {
	t := time.NewTimer(time.Hour)
	t.Stop()
	armed := false
	for {
		select {
		case <-c.dead:
			t.Stop()
			return
		case <-c.idleKick:
			if !armed {
				t.Reset(idleStreamClose)
				armed = true
			}
		case now := <-t.C:
			c.mu.Lock()
			next := c.closeIdleLocked(now.Add(-idleStreamClose), 0)
			c.mu.Unlock()
			armed = !next.IsZero()
			if armed {
				t.Reset(time.Until(next))
			}
		}
	}
}

// finishSends closes every send stream, waiting (within ctx) for Sends in
// progress, so that the peer can tell it has read everything (Goodbye).
func (c *conn) finishSends(ctx context.Context) {
	c.mu.Lock()
	type out struct {
		tag transport.Tag
		ts  *tagState
	}
	var open []out
	for tag, ts := range c.tags {
		if ts.out != nil {
			ts.users++ // keeps ts in c.tags while we wait for its lock
			open = append(open, out{tag, ts})
		}
	}
	c.mu.Unlock()
	for _, o := range open {
		locked := lock(ctx, o.ts.sendSem) == nil
		c.mu.Lock()
		if locked && o.ts.out != nil {
			s := o.ts.out
			c.dropOutLocked(o.ts, s)
			s.Close()
		}
		o.ts.users--
		c.gcLocked(o.tag, o.ts)
		c.mu.Unlock()
		if locked {
			<-o.ts.sendSem
		}
	}
}
