package mem

import (
	"slices"

	"github.com/ringtrain/ringtrain/transport"
)

// WatchConns implements transport.ConnWatcher. A connection exists once
// either side called Conn: the first Conn of a pair makes both ends, and
// each endpoint announces its own end. f runs with the endpoint's lock
// held.
func (e *Endpoint) WatchConns(f func(transport.Conn)) (stop func()) {
	e.mu.Lock()
	id := e.nextWatch
	e.nextWatch++
	e.watchers[id] = f
	for _, c := range e.conns {
		if c.live() {
			f(c)
		}
	}
	e.mu.Unlock()
	return func() {
		e.mu.Lock()
		delete(e.watchers, id)
		e.mu.Unlock()
	}
}

// Connected implements transport.ConnWatcher: the peers with a live
// connection (neither end closed or failed).
func (e *Endpoint) Connected() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	var ids []string
	for id, c := range e.conns {
		if c.live() {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	return ids
}

// accept makes this endpoint's end of the connection that dialer opened,
// if it has none.
func (e *Endpoint) accept(dialer *Endpoint) {
	if e.isClosed() {
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.conns[dialer.id] == nil {
		c := newConn(e, dialer, e.net.dir(e.id, dialer.id), e.net.dir(dialer.id, e.id))
		e.conns[dialer.id] = c
		e.announceLocked(c)
	}
}

// announceLocked tells the watchers about a new connection; e.mu is held.
func (e *Endpoint) announceLocked(c *conn) {
	for _, f := range e.watchers {
		f(c)
	}
}

func (c *conn) live() bool {
	return !c.isDead() && !c.local.isClosed() && !c.remote.isClosed()
}
