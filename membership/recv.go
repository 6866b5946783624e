package membership

import (
	"errors"
	"slices"

	"github.com/ringtrain/ringtrain/transport"
)

// Control receivers. A member reads control messages only from the
// connections that exist: the endpoint announces each one, whichever side
// dialed it (transport.ConnWatcher), and a receiver reads it until it
// ends. Nothing here dials: a connection exists because this node sent to
// the peer (send.go) or the peer sent to it, so in steady state a member
// holds connections only to its epoch's coordinator (and the data plane to
// its ring neighbours), and the coordinator one to each member: O(1) per
// member instead of one to every peer. The exchanges of an epoch change
// reach further; the endpoint closes what they leave idle (see
// quic.Config.IdleClose).
//
// A connection that ends with a definite loss is reported to the machine
// at once (the transport may know before gossip); one closed for idleness
// or by this node is not a loss, and the next message either way makes a
// new connection with a new receiver.

// onConn starts a receiver for a new connection; the endpoint calls it
// while holding its lock, so it only starts a goroutine.
func (m *Member) onConn(c transport.Conn) {
	m.recvMu.Lock()
	defer m.recvMu.Unlock()
	if m.recvDone {
		return
	}
	m.wg.Add(1)
	go m.receive(c)
}

// stopReceivers stops the watch and keeps onConn from starting receivers,
// so the wait group can be waited for. The member's context is done
// already: running receivers return.
func (m *Member) stopReceivers() {
	if m.stopWatch != nil {
		m.stopWatch()
	}
	m.recvMu.Lock()
	m.recvDone = true
	m.recvMu.Unlock()
}

// receive reads control messages from one connection into the inbox
// until the connection or the member ends. It runs as long as the
// connection, so its Recv is bounded by the member's context rather than
// a deadline.
func (m *Member) receive(c transport.Conn) {
	defer m.wg.Done()
	peer := c.Peer()
	err := m.receiveFrom(c, peer, make([]byte, maxControl))
	if m.ctx.Err() != nil {
		return
	}
	// A connection replaced by a newer one to the same peer (both dialed
	// at once after an idle close) ends with a loss too; the peer is not
	// lost while a live connection to it remains.
	if definiteLoss(err) && !slices.Contains(m.watcher.Connected(), peer) {
		select {
		case m.lost <- peer:
		default:
		}
	}
	m.log.Debug("control connection ended", "peer", peer, "err", err)
}

// receiveFrom reads from one connection until it fails.
func (m *Member) receiveFrom(c transport.Conn, peer string, buf []byte) error {
	for {
		n, err := c.Recv(m.ctx, controlTag(), buf)
		if err != nil {
			if !errors.Is(err, transport.ErrMessageSize) {
				return err // lost, closed, or a failure recorded on the tag
			}
			m.log.Warn("control receive", "peer", peer, "err", err)
			continue
		}
		mm, err := unmarshalMsg(buf[:n])
		if err != nil {
			m.log.Warn("dropping control message", "peer", peer, "err", err)
			continue
		}
		mm.From, mm.To = peer, m.cfg.ID
		select {
		case m.inbox <- mm:
		case <-m.ctx.Done():
			return m.ctx.Err()
		}
	}
}
