package peers

import (
	"slices"

	"github.com/ringtrain/ringtrain/transport"
)

// watchers are the WatchConns callbacks of a table; guarded by Table.mu,
// and called with it held (installLocked), so that a connection is
// announced exactly once: either in WatchConns' snapshot or when it is
// installed later.
type watchers struct {
	fs   map[int]func(transport.Conn)
	next int
}

func (w *watchers) announce(c transport.Conn) {
	for _, f := range w.fs {
		f(c)
	}
}

// WatchConns implements transport.ConnWatcher: f sees every connection
// the table installs, dialed or accepted (a refused duplicate dial is
// never installed, so never announced). f runs with the table's lock
// held.
func (t *Table[C]) WatchConns(f func(transport.Conn)) (stop func()) {
	t.mu.Lock()
	if t.watch.fs == nil {
		t.watch.fs = make(map[int]func(transport.Conn))
	}
	id := t.watch.next
	t.watch.next++
	t.watch.fs[id] = f
	for _, en := range t.peers {
		if c, ok := en.live(); ok {
			f(c)
		}
	}
	t.mu.Unlock()
	return func() {
		t.mu.Lock()
		delete(t.watch.fs, id)
		t.mu.Unlock()
	}
}

// Connected implements transport.ConnWatcher.
func (t *Table[C]) Connected() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	var ids []string
	for id, en := range t.peers {
		if _, ok := en.live(); ok {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	return ids
}
