package quic

import (
	"fmt"
	"time"

	"github.com/ringtrain/ringtrain/transport"
)

// Idle connections (Config.IdleClose). A node talks to few peers in steady
// state (its ring neighbours, its epoch's coordinator) but to many during
// an epoch change or a state sync; without this, every connection it ever
// made would stay open, kept alive by QUIC's keep-alives. The idle loop
// samples each connection every IdleClose/4 (activity): one that was not
// busy and moved no message for IdleClose is closed with codeIdle, which
// neither side takes for a loss.

// KeepOpen names the peers whose connections IdleClose never closes,
// replacing the previous set: a running epoch's ring neighbours, whose
// connections collective.Group holds for the whole epoch, however long
// training pauses between steps.
func (e *Endpoint) KeepOpen(ids ...string) {
	keep := make(map[string]bool, len(ids))
	for _, id := range ids {
		keep[id] = true
	}
	e.mu.Lock()
	e.keep = keep
	e.mu.Unlock()
}

type idleMark struct {
	traffic uint64    // activity's count at the last change
	since   time.Time // when the connection was last seen busy or changed
}

func (e *Endpoint) idleLoop() {
	t := time.NewTicker(max(e.cfg.IdleClose/4, time.Millisecond))
	defer t.Stop()
	marks := make(map[*conn]idleMark)
	for {
		var now time.Time
		select {
		case <-e.ctx.Done():
			return
		case now = <-t.C:
		}
		e.mu.Lock()
		var conns []*conn
		for id, ps := range e.peers {
			if c := ps.conn; c != nil && !c.isDead() && !e.keep[id] {
				conns = append(conns, c)
			}
		}
		e.mu.Unlock()
		next := make(map[*conn]idleMark, len(conns))
		for _, c := range conns {
			traffic, busy := c.activity()
			mk, ok := marks[c]
			if !ok || busy || traffic != mk.traffic {
				mk = idleMark{traffic: traffic, since: now}
			}
			if now.Sub(mk.since) >= e.cfg.IdleClose {
				e.closeIdle(c)
				continue
			}
			next[c] = mk
		}
		marks = next
	}
}

// activity returns a count that grows with every message either way
// (calls begun on c, streams opened either way) and whether c is busy: a
// call on a data tag runs or a data stream is open, or a control message
// is being written or read. A Recv waiting on a control tag (a control
// protocol's receiver, which waits as long as the connection lives) does
// not make c busy, nor does a control tag's send stream left open between
// messages.
func (c *conn) activity() (traffic uint64, busy bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for tag, ts := range c.tags {
		if tag.Op < transport.ControlOpBase {
			busy = busy || ts.out != nil || len(ts.queue) > 0 || ts.reading != nil || ts.users > 0
		} else {
			busy = busy || ts.reading != nil || len(ts.sendSem) > 0
		}
	}
	return c.calls.Load() + c.sent.Load() + c.accepted, busy
}

// closeIdle closes c, unless it was replaced meanwhile.
func (e *Endpoint) closeIdle(c *conn) {
	e.mu.Lock()
	ps := e.peers[c.peer]
	if ps == nil || ps.conn != c || e.closed {
		e.mu.Unlock()
		return
	}
	ps.conn = nil
	notify(ps)
	e.mu.Unlock()
	e.log.Debug("closing an idle connection", "peer", c.peer, "idle", e.cfg.IdleClose)
	c.close(codeIdle, fmt.Sprintf("idle for %v", e.cfg.IdleClose),
		fmt.Errorf("%w: closed after %v without traffic", transport.ErrClosed, e.cfg.IdleClose))
}
