package membership

import (
	"context"
	"fmt"
	"time"

	"github.com/ringtrain/ringtrain/membership/agree"
)

// Send queues. The driver hands every outgoing agreement message to the
// queue of its peer and goes on: a peer that does not read (frozen, cut
// off, slow to dial) delays only its own queue. Each queue has one sender
// goroutine, tracked by the member's wait group, that exits once the queue
// stayed empty for sendIdle; each send has a deadline (sendTimeout). A full
// queue drops the new message: the protocol resends what matters, and a
// queue that full is one whose peer has not read for a while.
const (
	sendQueueLen = 64
	sendIdle     = 30 * time.Second
)

// sendTimeout bounds one control message send once connected.
func (c *Config) sendTimeout() time.Duration { return min(c.AckTimeout, 4*c.ResendInterval) }

// dialTimeout bounds the dial a send may need first. Only senders dial
// (recv.go), so a dial cut short is never finished by anyone: on a loaded
// machine an all-to-all exchange (a first epoch of many nodes) makes many
// handshakes at once, and with the send's own deadline none completed.
// The dial blocks only this peer's queue; FailPeer ends it at once for a
// peer gossip declares dead.
func (c *Config) dialTimeout() time.Duration { return max(c.sendTimeout(), c.ReportTimeout) }

// enqueue encodes mm and queues it for mm.To. Only the driver calls it,
// so the wait group is above zero when a sender is added.
func (m *Member) enqueue(mm agree.Msg) {
	b, err := marshalMsg(mm)
	if err != nil {
		m.log.Error("dropping control message", "peer", mm.To, "kind", mm.Kind, "err", err)
		return
	}
	m.sendMu.Lock()
	defer m.sendMu.Unlock()
	q, ok := m.queues[mm.To]
	if !ok {
		if m.ctx.Err() != nil {
			return
		}
		q = make(chan []byte, sendQueueLen)
		m.queues[mm.To] = q
		m.wg.Add(1)
		go m.sendLoop(mm.To, q)
	}
	select {
	case q <- b:
	default:
		m.log.Debug("control send queue full: dropping", "peer", mm.To, "kind", mm.Kind)
	}
}

// sendLoop sends the messages queued for peer, in order, until the member
// closes or the queue stays idle.
func (m *Member) sendLoop(peer string, q chan []byte) {
	defer m.wg.Done()
	idle := time.NewTimer(sendIdle)
	defer idle.Stop()
	for {
		select {
		case <-m.ctx.Done():
			return
		case b := <-q:
			if err := m.sendControl(peer, b); err != nil {
				m.log.Debug("control send failed", "peer", peer, "err", err)
			}
		case <-idle.C:
			m.sendMu.Lock()
			if len(q) == 0 {
				delete(m.queues, peer)
				m.sendMu.Unlock()
				return
			}
			m.sendMu.Unlock()
		}
		idle.Reset(sendIdle)
	}
}

// sendControl sends one encoded control message to peer: the dial within
// dialTimeout, the send within sendTimeout.
func (m *Member) sendControl(peer string, b []byte) error {
	dctx, dcancel := context.WithTimeout(m.ctx, m.cfg.dialTimeout())
	c, err := m.cfg.Endpoint.Conn(dctx, peer)
	dcancel()
	if err == nil {
		ctx, cancel := context.WithTimeout(m.ctx, m.cfg.sendTimeout())
		err = c.Send(ctx, controlTag(), b)
		cancel()
	}
	if err != nil {
		return fmt.Errorf("membership: node %s: control message to %s: %w", m.cfg.ID, peer, err)
	}
	return nil
}
