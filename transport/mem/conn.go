package mem

import (
	"context"
	"fmt"
	"math/bits"
	"sync"
	"time"

	"github.com/ringtrain/ringtrain/transport"
)

// msg is one queued message; buf is a pooled buffer holding n bytes.
type msg struct {
	buf     *[]byte
	n       int
	readyAt time.Time // delivery time (link delay and rate)
}

// mailbox is the queue of one tag on one link direction: a fixed ring of
// Window messages, so queuing allocates nothing.
type mailbox struct {
	q       [Window]msg
	head, n int
	waiters int // goroutines blocked on this box (send or recv)
}

func (b *mailbox) push(m msg) { b.q[(b.head+b.n)%Window] = m; b.n++ }

func (b *mailbox) pop() msg {
	m := b.q[b.head]
	b.q[b.head] = msg{}
	b.head = (b.head + 1) % Window
	b.n--
	return m
}

// direction is the state of messages flowing from one endpoint to another.
type direction struct {
	from, to string
	mu       sync.Mutex
	changed  chan struct{} // closed and replaced on every state change
	boxes    map[transport.Tag]*mailbox
	aborted  map[transport.Tag]string // tag → reason text, for both ends
	abortFIF []transport.Tag          // eviction order of aborted
	free     time.Time                // when the link is next idle (rate limit)
}

// wait returns the channel closed on the next state change. Call with mu held.
func (d *direction) wait() <-chan struct{} {
	if d.changed == nil {
		d.changed = make(chan struct{})
	}
	return d.changed
}

// signal wakes every waiter. Call with mu held.
func (d *direction) signal() {
	if d.changed != nil {
		close(d.changed)
		d.changed = nil
	}
}

func (d *direction) broadcast() {
	d.mu.Lock()
	d.signal()
	d.mu.Unlock()
}

func (d *direction) box(tag transport.Tag) *mailbox {
	b := d.boxes[tag]
	if b == nil {
		b = &mailbox{}
		d.boxes[tag] = b
	}
	return b
}

// release forgets an idle mailbox so finished operations leave no state.
func (d *direction) release(tag transport.Tag, b *mailbox) {
	if b.n == 0 && b.waiters == 0 {
		delete(d.boxes, tag)
	}
}

// abort records that tag failed and frees its queued messages. Call with mu held.
func (d *direction) abort(pool *bufPool, tag transport.Tag, reason string) {
	if _, ok := d.aborted[tag]; !ok {
		if len(d.abortFIF) >= maxAborted {
			delete(d.aborted, d.abortFIF[0])
			d.abortFIF = d.abortFIF[1:]
		}
		d.abortFIF = append(d.abortFIF, tag)
		d.aborted[tag] = reason
	}
	if b := d.boxes[tag]; b != nil {
		for b.n > 0 {
			pool.put(b.pop().buf)
		}
		d.release(tag, b)
	}
	d.signal()
}

// conn is one endpoint's view of its link to a peer.
type conn struct {
	local, remote *Endpoint
	out, in       *direction

	dead    chan struct{} // closed when the connection was failed (FailPeer)
	deadErr error         // why; set before dead is closed
	once    sync.Once
}

func newConn(local, remote *Endpoint, out, in *direction) *conn {
	return &conn{local: local, remote: remote, out: out, in: in, dead: make(chan struct{})}
}

// fail ends this connection object: pending and later calls on it return
// err; the endpoint has already dropped it, so a new Conn makes a fresh one.
func (c *conn) fail(err error) {
	c.once.Do(func() {
		c.deadErr = err
		close(c.dead)
	})
}

func (c *conn) isDead() bool {
	select {
	case <-c.dead:
		return true
	default:
		return false
	}
}

func (c *conn) Peer() string { return c.remote.id }

func (c *conn) err(op string, tag transport.Tag, err error) error {
	return &transport.OpError{Op: op, Peer: c.remote.id, Tag: tag, Err: err}
}

// state reports a closed endpoint on either side, if any.
func (c *conn) state() error {
	if c.local.isClosed() {
		return transport.ErrClosed
	}
	if c.isDead() {
		return c.deadErr
	}
	if c.remote.isClosed() {
		return transport.ErrPeerLost
	}
	return nil
}

func abortErr(reason string) error {
	by, why := splitReason(reason)
	return &transport.AbortError{By: by, Reason: why}
}

// Reasons are stored as "by\x00why" so both ends can report who aborted.
func joinReason(by, why string) string { return by + "\x00" + why }

func splitReason(s string) (string, string) {
	for i := 0; i < len(s); i++ {
		if s[i] == 0 {
			return s[:i], s[i+1:]
		}
	}
	return "", s
}

// sleepUntil waits until t or ctx is done.
func sleepUntil(ctx context.Context, t time.Time) error {
	d := time.Until(t)
	if d <= 0 {
		return nil
	}
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-tm.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (c *conn) Send(ctx context.Context, tag transport.Tag, p []byte) error {
	d := c.out
	d.mu.Lock()
	b := d.box(tag)
	for {
		if r, ok := d.aborted[tag]; ok {
			d.release(tag, b)
			d.mu.Unlock()
			return c.err("send", tag, abortErr(r))
		}
		if err := c.state(); err != nil {
			d.release(tag, b)
			d.mu.Unlock()
			return c.err("send", tag, err)
		}
		if b.n < Window {
			break
		}
		ch := d.wait()
		b.waiters++
		d.mu.Unlock()
		err := c.block(ctx, ch)
		d.mu.Lock()
		b.waiters--
		if err != nil {
			d.release(tag, b)
			d.mu.Unlock()
			return c.err("send", tag, err)
		}
	}
	l := c.local.net.link(c.local.id, c.remote.id)
	now := time.Now()
	ready := now
	if l.Rate > 0 {
		start := now
		if d.free.After(start) {
			start = d.free
		}
		ready = start.Add(time.Duration(float64(len(p)) / l.Rate * float64(time.Second)))
		d.free = ready
	}
	if l.Drop {
		d.release(tag, b)
		d.mu.Unlock()
		if err := sleepUntil(ctx, ready); err != nil {
			return c.err("send", tag, err)
		}
		return nil
	}
	buf := c.local.net.pool.get(len(p))
	copy(*buf, p)
	b.push(msg{buf: buf, n: len(p), readyAt: ready.Add(l.Delay)})
	d.signal()
	d.mu.Unlock()
	// A rate-limited sender is busy until its bytes are on the wire, like a
	// NIC with a short queue.
	if err := sleepUntil(ctx, ready); err != nil {
		return c.err("send", tag, err)
	}
	return nil
}

func (c *conn) Recv(ctx context.Context, tag transport.Tag, p []byte) (int, error) {
	d := c.in
	d.mu.Lock()
	b := d.box(tag)
	for {
		if r, ok := d.aborted[tag]; ok {
			d.release(tag, b)
			d.mu.Unlock()
			return 0, c.err("recv", tag, abortErr(r))
		}
		if c.local.isClosed() {
			d.release(tag, b)
			d.mu.Unlock()
			return 0, c.err("recv", tag, transport.ErrClosed)
		}
		if c.isDead() {
			d.release(tag, b)
			d.mu.Unlock()
			return 0, c.err("recv", tag, c.deadErr)
		}
		var timer <-chan time.Time
		if b.n > 0 {
			m := b.q[b.head]
			wait := time.Until(m.readyAt)
			if wait <= 0 {
				b.pop()
				d.release(tag, b)
				d.signal() // a window slot is free
				d.mu.Unlock()
				defer c.local.net.pool.put(m.buf)
				if m.n > len(p) {
					return 0, c.err("recv", tag, fmt.Errorf("%w: %d-byte message, %d-byte buffer", transport.ErrMessageSize, m.n, len(p)))
				}
				return copy(p, (*m.buf)[:m.n]), nil
			}
			t := time.NewTimer(wait)
			defer t.Stop() // at most a few per call: one per early wake-up
			timer = t.C
		} else if c.remote.isClosed() {
			d.release(tag, b)
			d.mu.Unlock()
			return 0, c.err("recv", tag, transport.ErrPeerLost)
		}
		ch := d.wait()
		b.waiters++
		d.mu.Unlock()
		err := c.block(ctx, ch, timer)
		d.mu.Lock()
		b.waiters--
		if err != nil {
			d.release(tag, b)
			d.mu.Unlock()
			return 0, c.err("recv", tag, err)
		}
	}
}

// block waits for a state change, a timer, the endpoints closing, or ctx.
func (c *conn) block(ctx context.Context, ch <-chan struct{}, timer ...<-chan time.Time) error {
	var t <-chan time.Time
	if len(timer) > 0 {
		t = timer[0]
	}
	select {
	case <-ch:
	case <-t:
	case <-c.local.done:
	case <-c.remote.done:
	case <-c.dead:
	case <-ctx.Done():
		return ctx.Err()
	}
	return nil
}

func (c *conn) Abort(ctx context.Context, tag transport.Tag, reason error) error {
	why := "aborted"
	if reason != nil {
		why = reason.Error()
	}
	r := joinReason(c.local.id, transport.TruncateReason(why))
	pool := &c.local.net.pool
	for _, d := range []*direction{c.out, c.in} {
		d.mu.Lock()
		d.abort(pool, tag, r)
		d.mu.Unlock()
	}
	return nil
}

// bufPool recycles message buffers by power-of-two capacity class, so a
// steady stream of equal-sized chunks allocates nothing after warm-up. It is
// a plain free list rather than a sync.Pool so that reuse is deterministic
// (the race detector makes sync.Pool drop buffers at random).
type bufPool struct {
	mu      sync.Mutex
	classes [48][]*[]byte
}

// maxFree bounds the idle buffers kept per class.
const maxFree = 64

func class(n int) int {
	if n <= 64 {
		return 6
	}
	return bits.Len(uint(n - 1))
}

func (p *bufPool) get(n int) *[]byte {
	c := class(n)
	p.mu.Lock()
	if l := len(p.classes[c]); l > 0 {
		b := p.classes[c][l-1]
		p.classes[c] = p.classes[c][:l-1]
		p.mu.Unlock()
		*b = (*b)[:n]
		return b
	}
	p.mu.Unlock()
	b := make([]byte, n, 1<<c)
	return &b
}

func (p *bufPool) put(b *[]byte) {
	if b == nil {
		return
	}
	c := class(cap(*b))
	p.mu.Lock()
	if len(p.classes[c]) < maxFree {
		p.classes[c] = append(p.classes[c], b)
	}
	p.mu.Unlock()
}
