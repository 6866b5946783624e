package tcp

import (
	"slices"

	"github.com/ringtrain/ringtrain/transport"
)

// watchers are the WatchConns callbacks of an endpoint; guarded by
// Endpoint.mu, and called with it held (installLocked), so that a
// connection is announced exactly once: either in WatchConns' snapshot or
// when it is installed later.
type watchers struct {
	fs   map[int]func(transport.Conn)
	next int
}

func (w *watchers) announce(c *conn) {
	for _, f := range w.fs {
		f(c)
	}
}

// WatchConns implements transport.ConnWatcher: f sees every connection
// this endpoint installs, dialed or accepted (a refused duplicate dial is
// never installed, so never announced). f runs with the endpoint's lock
// held.
func (e *Endpoint) WatchConns(f func(transport.Conn)) (stop func()) {
	e.mu.Lock()
	if e.watch.fs == nil {
		e.watch.fs = make(map[int]func(transport.Conn))
	}
	id := e.watch.next
	e.watch.next++
	e.watch.fs[id] = f
	for _, ps := range e.peers {
		if c := ps.conn; c != nil && !c.isDead() {
			f(c)
		}
	}
	e.mu.Unlock()
	return func() {
		e.mu.Lock()
		delete(e.watch.fs, id)
		e.mu.Unlock()
	}
}

// Connected implements transport.ConnWatcher.
func (e *Endpoint) Connected() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	var ids []string
	for id, ps := range e.peers {
		if c := ps.conn; c != nil && !c.isDead() {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	return ids
}
