package agree

import "slices"

// onCommit learns the decided successor of Base.
func (m *Machine) onCommit(c Msg) {
	v := c.Value
	if v == nil {
		return
	}
	held := m.hard.Held.Number
	member := v.Epoch.Has(m.id)
	switch {
	case c.Base == held:
		m.remember(c.Base, v)
	case !m.active && member && v.Epoch.Number > held:
		// Admitted (a newcomer, or a node that was left behind).
	default:
		return
	}
	if !m.pending {
		m.stash = append(m.stash, c)
		return
	}
	if !member {
		if !m.active || c.Base != held {
			return
		}
		m.active = false
		m.resetRound()
		if m.leaving {
			m.leftBy, m.leftAt = v.clone(), m.now // process finishes the leave
			m.hard.Left, m.dirty = v.clone(), true
		}
		return // excluded: wait to be admitted
	}
	old := m.hard.Held
	m.hard = HardState{Held: Epoch{Number: v.Epoch.Number, Members: slices.Clone(v.Epoch.Members)}, Made: v.clone()}
	m.dirty = true
	m.active = true
	m.resetRound()
	for _, id := range old.Members {
		if id != m.id && !v.Epoch.Has(id) {
			if p, ok := m.view[id]; !ok || p.State != PeerLeaving {
				m.out.Abort = append(m.out.Abort, id)
			}
		}
	}
	if v.Source != "" && !slices.Contains(v.Targets, m.id) && (m.cur.NoState || m.cur.Done != v.Step) {
		// The value counted a state this incarnation no longer has (it
		// restarted since it reported): the epoch stands, but its first
		// step cannot run here. Fail at once in the new epoch.
		m.seq++
		m.cur.Failed, m.boundaryAt, m.lastSend = true, m.now, -1<<30
		return
	}
	o := Outcome{Epoch: m.hard.Held, Changed: true, Step: m.cur.Done}
	if v.Source != "" && len(v.Targets) > 0 {
		o.Sync = SyncOrder{Source: v.Source, Targets: slices.Clone(v.Targets)}
		if slices.Contains(v.Targets, m.id) {
			o.Step = v.Step
		}
	}
	m.finish(o)
}

func (m *Machine) remember(base uint64, v *Value) {
	if _, ok := m.decided[base]; ok {
		return
	}
	m.decided[base] = v.clone()
	if len(m.decided) > 8 {
		delete(m.decided, slices.Min(sortedKeys(m.decided)))
	}
}
