package peers

import (
	"context"
	"time"
)

// Idle connections. A node talks to few peers in steady state (its ring
// neighbours, its epoch's coordinator) but to many during an epoch change
// or a state sync; without idle closing, every connection it ever made
// would stay open. IdleLoop samples each connection every After/4: one
// that was not busy and moved no message for After is detached from the
// table and handed to Idle.Close, which ends it in a way neither side takes
// for a loss.

// Idle configures IdleLoop.
type Idle[C Conn] struct {
	// After is how long a connection may carry nothing before it is
	// closed; positive.
	After time.Duration
	// Activity returns a count that grows with every message either way
	// and whether c is busy (a call in progress that must keep it open).
	Activity func(c C) (traffic uint64, busy bool)
	// Close ends c, which the table no longer holds.
	Close func(c C)
}

// KeepOpen names the peers whose connections IdleLoop never closes,
// replacing the previous set.
func (t *Table[C]) KeepOpen(ids ...string) {
	keep := make(map[string]bool, len(ids))
	for _, id := range ids {
		keep[id] = true
	}
	t.mu.Lock()
	t.keep = keep
	t.mu.Unlock()
}

// IdleLoop closes idle connections until ctx ends.
func (t *Table[C]) IdleLoop(ctx context.Context, idle Idle[C]) {
	tk := time.NewTicker(max(idle.After/4, time.Millisecond))
	defer tk.Stop()
	marks := make(map[C]idleMark)
	for {
		var now time.Time
		select {
		case <-ctx.Done():
			return
		case now = <-tk.C:
		}
		var samples []sample[C]
		for _, c := range t.idleCandidates() {
			traffic, busy := idle.Activity(c)
			samples = append(samples, sample[C]{c: c, traffic: traffic, busy: busy})
		}
		var expired []C
		marks, expired = sweep(marks, samples, now, idle.After)
		for _, c := range expired {
			if t.detach(c) {
				idle.Close(c)
			}
		}
	}
}

// idleCandidates are the live connections KeepOpen does not exempt.
func (t *Table[C]) idleCandidates() []C {
	t.mu.Lock()
	defer t.mu.Unlock()
	var conns []C
	for id, en := range t.peers {
		if c, ok := en.live(); ok && !t.keep[id] {
			conns = append(conns, c)
		}
	}
	return conns
}

type idleMark struct {
	traffic uint64    // the activity count at the last change
	since   time.Time // when the connection was last seen busy or changed
}

// sample is one connection's activity at one tick.
type sample[C comparable] struct {
	c       C
	traffic uint64
	busy    bool
}

// sweep is one tick of the idle loop at now: it returns the marks of the
// connections sampled (a connection not sampled, because it ended or is
// kept open, starts afresh if it is sampled again) and those that stayed
// idle for after.
func sweep[C comparable](marks map[C]idleMark, samples []sample[C], now time.Time, after time.Duration) (next map[C]idleMark, expired []C) {
	next = make(map[C]idleMark, len(samples))
	for _, s := range samples {
		mk, ok := marks[s.c]
		if !ok || s.busy || s.traffic != mk.traffic {
			mk = idleMark{traffic: s.traffic, since: now}
		}
		if now.Sub(mk.since) >= after {
			expired = append(expired, s.c)
			continue
		}
		next[s.c] = mk
	}
	return next, expired
}
