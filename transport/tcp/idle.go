package tcp

import (
	"fmt"

	"github.com/ringtrain/ringtrain/transport"
	"github.com/ringtrain/ringtrain/transport/internal/peers"
)

// Idle connections (Config.IdleClose), as in transport/quic: the idle loop
// (peers.Table.IdleLoop) samples each connection every IdleClose/4
// (activity); one that was not busy and moved no message for IdleClose is
// ended gracefully with an idle frame instead of a goodbye, which neither
// side takes for a loss: calls on it fail with errors wrapping
// transport.ErrClosed, not transport.ErrPeerLost.

// KeepOpen names the peers whose connections IdleClose never closes,
// replacing the previous set: a running epoch's ring neighbours, whose
// connections collective.Group holds for the whole epoch, however long
// training pauses between steps.
func (e *Endpoint) KeepOpen(ids ...string) { e.peers.KeepOpen(ids...) }

// idle is what the peer table's idle loop needs of this transport.
func (e *Endpoint) idle() peers.Idle[*conn] {
	return peers.Idle[*conn]{After: e.cfg.IdleClose, Activity: (*conn).activity, Close: e.closeIdle}
}

// activity returns a count that grows with every message either way
// (Send and Recv calls begun, messages begun by the peer) and whether c is
// busy: on a data tag a call runs, a message is arriving or buffered,
// credit is owed to the peer or the peer has not consumed all we sent; on
// a control tag a Send runs or a message is arriving. A Recv waiting on a
// control tag (a control protocol's receiver, which waits as long as the
// connection lives) does not make c busy.
func (c *conn) activity() (traffic uint64, busy bool) {
	if c.b != nil {
		for _, l := range c.b.lanes {
			t, b := l.laneActivity()
			traffic += t
			busy = busy || b
		}
		return traffic, busy
	}
	return c.laneActivity()
}

// laneActivity is activity for one lane.
func (c *conn) laneActivity() (traffic uint64, busy bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	traffic = c.calls.Load() + c.arrived
	for tag, ts := range c.tags {
		if ts.busy(tag.Op >= transport.ControlOpBase) {
			return traffic, true
		}
	}
	return traffic, false
}

// busy: see activity; guarded by conn.mu.
func (ts *tagState) busy(control bool) bool {
	if control {
		return len(ts.sendSem) > 0 || ts.cur != nil || ts.reading
	}
	return ts.users > 0 || len(ts.queue) > 0 || ts.cur != nil || ts.unacked > 0 || ts.credit != tagWindow
}

// closeIdle ends c, which the peer table no longer holds, on its own
// goroutine: the graceful end waits up to Linger for the peer, and the
// idle loop must not wait for each connection in turn.
func (e *Endpoint) closeIdle(c *conn) {
	e.log.Debug("closing an idle connection", "peer", c.peer, "idle", e.cfg.IdleClose)
	err := fmt.Errorf("%w: closed after %v without traffic", transport.ErrClosed, e.cfg.IdleClose)
	e.wg.Go(func() { c.goodbye(kindIdle, err, e.cfg.Linger) })
}
