package quic

import (
	"fmt"

	"github.com/ringtrain/ringtrain/transport"
	"github.com/ringtrain/ringtrain/transport/internal/peers"
)

// Idle connections (Config.IdleClose). A node talks to few peers in steady
// state (its ring neighbours, its epoch's coordinator) but to many during
// an epoch change or a state sync; without this, every connection it ever
// made would stay open, kept alive by QUIC's keep-alives. The idle loop
// (peers.Table.IdleLoop) samples each connection every IdleClose/4
// (activity): one that was not busy and moved no message for IdleClose is
// closed with codeIdle, which neither side takes for a loss.

// KeepOpen names the peers whose connections IdleClose never closes,
// replacing the previous set: a running epoch's ring neighbours, whose
// connections collective.Group holds for the whole epoch, however long
// training pauses between steps.
func (e *Endpoint) KeepOpen(ids ...string) { e.peers.KeepOpen(ids...) }

func (e *Endpoint) idleLoop() {
	e.peers.IdleLoop(e.ctx, peers.Idle[*conn]{After: e.cfg.IdleClose, Activity: (*conn).activity, Close: e.closeIdle})
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

// closeIdle closes c, which the peer table no longer holds.
func (e *Endpoint) closeIdle(c *conn) {
	e.log.Debug("closing an idle connection", "peer", c.peer, "idle", e.cfg.IdleClose)
	c.close(codeIdle, fmt.Sprintf("idle for %v", e.cfg.IdleClose),
		fmt.Errorf("%w: closed after %v without traffic", transport.ErrClosed, e.cfg.IdleClose))
}
