package peers

import "github.com/ringtrain/ringtrain/transport"

// pair is what admits decides on: the state of this node's side of a pair
// when the peer's dial arrives.
type pair struct {
	self, peer string
	// live: this side holds a connection to peer that has not ended;
	// liveDialedByMe and liveInc are its origin.
	live           bool
	liveDialedByMe bool
	liveInc        uint64
	// dialing: this side is dialing peer now.
	dialing bool
	// inc is the incarnation the incoming connection's hello announces.
	inc uint64
}

// admits reports whether an incoming connection becomes the pair's
// connection. Of two connections of the same peer process the one dialed
// by the lower ID is kept; a connection from another incarnation (the peer
// restarted) is always taken unless our own dial, which the peer will
// accept, wins.
func admits(p pair) bool {
	if p.live && p.liveInc == p.inc {
		// Same peer process: keep the connection dialed by the lower ID.
		// If the peer dialed the old one too, it has given up on it.
		return !(p.liveDialedByMe && p.self < p.peer)
	}
	return !(p.dialing && p.self < p.peer) // our dial wins; the peer accepts it
}

// Admit decides whether an incoming connection from peer, whose hello
// announced incarnation inc, becomes the pair's connection. If it does,
// accept runs with the table's lock held (so no dial or FailPeer comes in
// between) and the connection it returns is installed, replacing the old
// one; accept's error is returned as it is. Otherwise Admit returns
// ErrDuplicate (the transport tells the dialer), or transport.ErrClosed
// when the table is closed, without calling accept.
func (t *Table[C]) Admit(peer string, inc uint64, accept func() (C, error)) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return transport.ErrClosed
	}
	en := t.entryLocked(peer)
	p := pair{self: t.cfg.Self, peer: peer, dialing: en.dialing, inc: inc}
	if old, ok := en.live(); ok {
		p.live = true
		p.liveDialedByMe, p.liveInc = old.Origin()
	}
	if !admits(p) {
		return ErrDuplicate
	}
	c, err := accept()
	if err != nil {
		return err
	}
	t.installLocked(en, c)
	return nil
}
