package agree

import (
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"slices"
	"strings"
)

// The simulator runs machines over a fake network under a seeded fault
// schedule and checks the invariants after every event. Everything is
// driven by one *rand.Rand, so a seed replays exactly.

type simOpts struct {
	n          int // initial nodes
	joins      int // fresh nodes that join later
	ticks      int // total ticks
	faultUntil int // faults stop here; then everything heals
	liveWithin int // ticks after faultUntil by which a full epoch must step
	drop, dup  float64
	maxDelay   int
	pPart      float64 // per tick: change the partition
	pCrash     float64 // per tick: crash a node
	pRestart   float64 // per tick: restart a crashed node
	pLeave     float64 // per tick: a node asks to leave
	pJoin      float64 // per tick: start a joiner
	pPartial   float64 // a completed step fails on a random subset
	legacy     legacyRules
	minMembers int            // 0: more than half of the nodes
	dropIf     func(Msg) bool // scripted loss
}

func randomOpts(r *rand.Rand) simOpts {
	o := simOpts{n: 3 + r.IntN(7)}
	o.joins = r.IntN(3)
	if o.n+o.joins > 9 {
		o.joins = 9 - o.n
	}
	o.faultUntil = 60 + r.IntN(120)
	o.liveWithin = 200
	o.ticks = o.faultUntil + o.liveWithin + 20
	o.drop = []float64{0, 0.02, 0.1, 0.3}[r.IntN(4)]
	o.dup = []float64{0, 0.05, 0.2}[r.IntN(3)]
	o.maxDelay = r.IntN(6)
	o.pPart = []float64{0, 0.01, 0.04}[r.IntN(3)]
	o.pCrash = []float64{0, 0.005, 0.02}[r.IntN(3)]
	o.pRestart = 0.05
	o.pLeave = []float64{0, 0.003, 0.01}[r.IntN(3)]
	o.pJoin = []float64{0, 0.01, 0.03}[r.IntN(3)]
	o.pPartial = []float64{0, 0.1}[r.IntN(2)]
	return o
}

type simNode struct {
	id      string
	m       *Machine
	up      bool
	gone    bool // left for good
	hard    HardState
	done    uint64
	params  uint64 // digest of the state: a hash chain over applied steps
	noState bool
	// training
	phase    int // 0 at boundary, 1 syncing, 2 in collective, 3 computing
	epoch    Epoch
	attempt  int // collective index within the epoch
	sync     SyncOrder
	since    int
	wantLeft bool
	next     StepReport // report for the next boundary
	nextAt   int
	// gossip
	// indexed like sim.nodes (slices, not maps: gossip runs for every
	// pair of nodes on every tick)
	contact []int
	view    []Peer
	seen    []bool // view[i] holds what gossip told of node i
}

type inflight struct {
	at int
	m  Msg
}

type arrival struct {
	done   uint64
	params uint64
}

type sim struct {
	r       *rand.Rand
	o       simOpts
	now     int
	nodes   []*simNode
	byID    map[string]*simNode
	net     [][]inflight       // ring of delivery slots: message due at tick t is in net[t%len(net)]
	block   map[[2]string]bool // directed: from, to
	trace   []string
	fail    string
	verbose bool // trace every message sent
	tracing bool // record the trace

	// observer state
	decided     map[uint64]*Value          // base → decided value
	epochs      map[uint64][]string        // number → members (as applied)
	applied     map[string]map[uint64]bool // node → epoch numbers applied
	acceptVal   map[bkey]*Value            // base/ballot → value sent in Accept
	acceptCands map[bkey][]string
	accepted    map[bkey]map[string]bool      // base/ballot → acceptors that accepted
	colls       map[string]map[string]arrival // epoch/attempt → arrivals
	failedSteps int
	lastFull    int // last tick a step completed in an epoch of every up node
	steps       int
}

func newSim(seed uint64, o simOpts) *sim {
	s := &sim{
		r: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), o: o,
		byID: map[string]*simNode{}, block: map[[2]string]bool{},
		decided: map[uint64]*Value{}, epochs: map[uint64][]string{}, applied: map[string]map[uint64]bool{},
		acceptVal: map[bkey]*Value{}, acceptCands: map[bkey][]string{}, accepted: map[bkey]map[string]bool{}, colls: map[string]map[string]arrival{},
		lastFull: -1,
		net:      make([][]inflight, o.maxDelay+2),
	}
	for i := 0; i < o.n; i++ {
		s.start(fmt.Sprintf("n%d", i), true)
	}
	return s
}

func (s *sim) logf(format string, a ...any) {
	if !s.tracing {
		return // a failing seed is replayed with tracing on
	}
	s.trace = append(s.trace, fmt.Sprintf("%4d ", s.now)+fmt.Sprintf(format, a...))
}

func (s *sim) violate(format string, a ...any) {
	if s.fail == "" {
		s.fail = fmt.Sprintf("tick %d: ", s.now) + fmt.Sprintf(format, a...)
		s.logf("VIOLATION %s", s.fail)
	}
}

type bkey struct {
	base   uint64
	ballot Ballot
}

func (s *sim) cfgFor(id string, hard HardState) Config {
	total := s.o.n + s.o.joins
	minMembers := total/2 + 1
	if s.o.minMembers > 0 {
		minMembers = s.o.minMembers
	}
	return Config{ID: id, MinMembers: minMembers, Hard: hard, legacy: s.o.legacy,
		ResendTicks: 2, ReportTicks: 60, FailureTicks: 6, PhaseTicks: 16, SettleTicks: 3, JoinTicks: 30}
}

func (s *sim) start(id string, initial bool) *simNode {
	n := &simNode{id: id, up: true, noState: !initial}
	n.m = s.newMachine(id, HardState{})
	s.nodes = append(s.nodes, n)
	s.byID[id] = n
	s.logf("start %s", id)
	s.boundary(n, StepReport{NoState: n.noState})
	return n
}

func (s *sim) newMachine(id string, hard HardState) *Machine {
	m := New(s.cfgFor(id, hard))
	m.tap = s.observeSend
	return m
}

func (s *sim) boundary(n *simNode, r StepReport) {
	n.phase, n.since = 0, s.now
	if n.wantLeft {
		r.Leave = true
	}
	n.m.Boundary(r)
	s.drain(n)
}

func (s *sim) crash(n *simNode) {
	n.up = false
	s.logf("crash %s (held %v active=%v)", n.id, n.m.Held(), n.m.Active())
}

func (s *sim) restart(n *simNode) {
	n.up = true
	n.m = s.newMachine(n.id, n.hard)
	n.contact, n.view, n.seen = nil, nil, nil
	lost := s.r.IntN(4) == 0
	if lost {
		n.done, n.params, n.noState = 0, 0, true
	}
	s.logf("restart %s hard=%v lostState=%v", n.id, n.hard.Held, lost)
	s.boundary(n, StepReport{Done: n.done, NoState: n.noState})
}

// drain handles one node's Ready: persist, send, act on the outcome.
func (s *sim) drain(n *simNode) {
	for n.m.HasReady() {
		rd := n.m.Ready()
		if rd.Hard != nil {
			n.hard = rd.Hard.clone()
		}
		for _, mm := range rd.Msgs {
			s.transmit(mm)
		}
		n.m.Advance()
		if rd.Outcome != nil {
			s.onOutcome(n, *rd.Outcome)
		}
	}
}

func (s *sim) transmit(mm Msg) {
	copies := 1
	if s.now < s.o.faultUntil && s.r.Float64() < s.o.dup {
		copies = 2
	}
	for range copies {
		if s.o.dropIf != nil && s.o.dropIf(mm) {
			s.logf("drop (scripted) %v", mm)
			continue
		}
		if s.now < s.o.faultUntil && s.r.Float64() < s.o.drop {
			s.logf("drop %v", mm)
			continue
		}
		d := 1
		if s.o.maxDelay > 0 {
			d += s.r.IntN(s.o.maxDelay + 1)
		}
		slot := &s.net[(s.now+d)%len(s.net)]
		*slot = append(*slot, inflight{at: s.now + d, m: mm})
	}
}

func (s *sim) linked(a, b string) bool { return len(s.block) == 0 || !s.block[[2]string{a, b}] }

func collKey(e uint64, attempt int) string { return fmt.Sprintf("%d/%d", e, attempt) }

func (s *sim) arrive(n *simNode) {
	k := collKey(n.epoch.Number, n.attempt)
	if s.colls[k] == nil {
		s.colls[k] = map[string]arrival{}
	}
	s.colls[k][n.id] = arrival{done: n.done, params: n.params}
	n.phase = 2
}

func stepDigest(p uint64, step uint64, e Epoch) uint64 {
	h := fnv.New64a()
	var b [24]byte
	binary.LittleEndian.PutUint64(b[0:], p)
	binary.LittleEndian.PutUint64(b[8:], step)
	binary.LittleEndian.PutUint64(b[16:], e.Number)
	h.Write(b[:])
	for _, id := range e.Members {
		h.Write([]byte(id))
	}
	return h.Sum64()
}

// train advances the training model of every node by one tick.
func (s *sim) train() {
	const timeout = 12
	for _, n := range s.nodes {
		if !n.up || n.gone {
			continue
		}
		switch n.phase {
		case 1: // syncing
			if !slices.Contains(n.sync.Targets, n.id) {
				s.arrive(n)
				break
			}
			src := s.byID[n.sync.Source]
			if src.up && src.epoch.Number == n.epoch.Number && src.attempt == 0 && src.phase >= 2 && s.linked(src.id, n.id) {
				n.done, n.params, n.noState = src.done, src.params, false
				s.logf("%s synced from %s: step %d", n.id, src.id, n.done)
				s.arrive(n)
			} else if s.now-n.since > timeout {
				s.logf("%s sync from %s failed", n.id, src.id)
				s.boundary(n, StepReport{Done: n.done, Failed: true, NoState: n.noState, Lost: []string{src.id}})
			}
		case 3: // computing the next boundary
			if s.now >= n.nextAt {
				s.boundary(n, n.next)
			}
		}
	}
	// Collectives: complete when every member arrived and can talk.
	for _, n := range s.nodes {
		if !n.up || n.gone || n.phase != 2 {
			continue
		}
		k := collKey(n.epoch.Number, n.attempt)
		arr := s.colls[k]
		all := true
		for _, id := range n.epoch.Members {
			p := s.byID[id]
			if _, ok := arr[id]; !ok || !p.up || p.phase != 2 || p.epoch.Number != n.epoch.Number || p.attempt != n.attempt {
				all = false
				break
			}
		}
		if all {
			for _, a := range n.epoch.Members {
				for _, b := range n.epoch.Members {
					if a != b && !s.linked(a, b) {
						all = false
					}
				}
			}
		}
		if !all {
			if s.now-n.since > timeout {
				s.finishStep(n, false)
			}
			continue
		}
		ref := arr[n.epoch.Members[0]]
		for _, id := range n.epoch.Members {
			if a := arr[id]; a != ref {
				s.violate("epoch %d members run different states: %s at step %d (%x), %s at step %d (%x)",
					n.epoch.Number, n.epoch.Members[0], ref.done, ref.params, id, a.done, a.params)
			}
		}
		for _, id := range n.epoch.Members {
			s.byID[id].noState = false // all lost theirs: a fresh start
		}
		s.steps++
		var upIDs []string
		for _, p := range s.nodes {
			if p.up && !p.gone && !p.wantLeft {
				upIDs = append(upIDs, p.id)
			}
		}
		if slices.Equal(upIDs, n.epoch.Members) || len(upIDs) == 0 {
			s.lastFull = s.now
		}
		partial := s.now < s.o.faultUntil && s.r.Float64() < s.o.pPartial
		s.logf("step %d completes in epoch %d (partial=%v)", ref.done, n.epoch.Number, partial)
		for _, id := range n.epoch.Members {
			s.finishStep(s.byID[id], !partial || s.r.IntN(2) == 0)
		}
		delete(s.colls, k)
	}
}

func (s *sim) finishStep(n *simNode, ok bool) {
	r := StepReport{Done: n.done, Failed: !ok}
	if !ok {
		s.failedSteps++
	}
	if ok {
		n.params = stepDigest(n.params, n.done, n.epoch)
		n.done++
		r.Done = n.done
	}
	n.phase, n.next, n.nextAt = 3, r, s.now+1+s.r.IntN(2)
}

// gossip refreshes each node's view: a peer is alive while it talks to
// the node both ways; its metadata is copied while it does.
func (s *sim) gossip() {
	for _, n := range s.nodes {
		if !n.up {
			continue
		}
		if k := len(s.nodes); len(n.view) < k {
			n.contact = append(n.contact, make([]int, k-len(n.contact))...)
			n.view = append(n.view, make([]Peer, k-len(n.view))...)
			n.seen = append(n.seen, make([]bool, k-len(n.seen))...)
		}
		changed := false
		for i, p := range s.nodes {
			if p == n {
				continue
			}
			if p.up && s.linked(n.id, p.id) && s.linked(p.id, n.id) {
				n.contact[i] = s.now
				st := PeerJoining
				if p.m.Active() {
					st = PeerActive
				}
				if p.wantLeft {
					st = PeerLeaving
				}
				np := Peer{ID: p.id, Alive: true, State: st, Epoch: p.m.Held().Number, Step: p.done, NoState: p.noState, Amnesiac: p.m.Amnesiac()}
				if !n.seen[i] || n.view[i] != np {
					n.view[i], n.seen[i], changed = np, true, true
				}
			} else if v := n.view[i]; n.seen[i] && v.Alive && (p.gone || s.now-n.contact[i] > 3) {
				v.Alive = false
				n.view[i], changed = v, true
			} else if !n.seen[i] && (p.gone || !p.up) {
				// Gossip's state exchange tells a newcomer about dead nodes.
				n.view[i], n.seen[i], changed = Peer{ID: p.id, State: PeerJoining}, true, true
			}
		}
		if changed {
			peers := make([]Peer, 0, len(n.view))
			for i, p := range n.view {
				if n.seen[i] {
					peers = append(peers, p)
				}
			}
			slices.SortFunc(peers, func(a, b Peer) int { return strings.Compare(a.ID, b.ID) })
			n.m.Observe(peers)
			s.drain(n)
		}
	}
}

func (s *sim) faults() {
	o := s.o
	live := func() []*simNode {
		var l []*simNode
		for _, n := range s.nodes {
			if n.up && !n.gone {
				l = append(l, n)
			}
		}
		return l
	}
	if s.r.Float64() < o.pPart {
		clear(s.block)
		switch s.r.IntN(3) {
		case 0:
			s.logf("heal")
		case 1: // symmetric split
			g := map[string]int{}
			for _, n := range s.nodes {
				g[n.id] = s.r.IntN(2)
			}
			for _, a := range s.nodes {
				for _, b := range s.nodes {
					if g[a.id] != g[b.id] {
						s.block[[2]string{a.id, b.id}] = true
					}
				}
			}
			s.logf("partition %v", g)
		case 2: // asymmetric: some directed links cut
			for _, a := range s.nodes {
				for _, b := range s.nodes {
					if a != b && s.r.IntN(6) == 0 {
						s.block[[2]string{a.id, b.id}] = true
					}
				}
			}
			s.logf("asymmetric cut %v", sortedKeys(blockNames(s.block)))
		}
	}
	if l := live(); len(l) > 1 && s.r.Float64() < o.pCrash {
		s.crash(l[s.r.IntN(len(l))])
	}
	for _, n := range s.nodes {
		if !n.up && !n.gone && s.r.Float64() < o.pRestart {
			s.restart(n)
		}
	}
	if l := live(); len(l) > 2 && s.decided[0] != nil && s.r.Float64() < o.pLeave {
		n := l[s.r.IntN(len(l))]
		if !n.wantLeft {
			n.wantLeft = true
			s.logf("%s asks to leave", n.id)
			if n.phase == 0 && !n.m.Active() {
				s.boundary(n, StepReport{Done: n.done, Leave: true, NoState: n.noState})
			}
		}
	}
	if len(s.nodes) < o.n+o.joins && s.r.Float64() < o.pJoin {
		s.start(fmt.Sprintf("n%d", len(s.nodes)), false)
	}
}

func blockNames(b map[[2]string]bool) map[string]bool {
	out := map[string]bool{}
	for k := range b {
		out[k[0]+">"+k[1]] = true
	}
	return out
}

// run executes the schedule; it returns "" or the first violation.
func (s *sim) run() string {
	return s.runHook(nil)
}

// runHook is run with a hook called at the start of every tick (scripted
// regression schedules use it to act at a chosen phase of a round).
func (s *sim) runHook(hook func()) string {
	for s.now = 0; s.now < s.o.ticks && s.fail == ""; s.now++ {
		if hook != nil {
			hook()
		}
		if s.now < s.o.faultUntil {
			s.faults()
		} else if s.now == s.o.faultUntil {
			clear(s.block)
			for _, n := range s.nodes {
				if !n.up && !n.gone {
					s.restart(n)
				}
			}
			s.logf("faults stop")
		}
		// Deliver due messages in a random order (reordering).
		// Messages due now sit in their own slot of the ring, in the
		// order they were sent; what is sent meanwhile lands in later
		// slots (every delay is at least 1 and shorter than the ring).
		slot := &s.net[s.now%len(s.net)]
		due := *slot
		s.r.Shuffle(len(due), func(i, j int) { due[i], due[j] = due[j], due[i] })
		for _, f := range due {
			to := s.byID[f.m.To]
			if to == nil || !to.up || !s.linked(f.m.From, f.m.To) {
				continue
			}
			to.m.Step(f.m)
			s.drain(to)
			if s.fail != "" {
				return s.fail
			}
		}
		*slot = due[:0]
		s.gossip()
		for _, n := range s.nodes {
			if n.up {
				n.m.Tick()
				s.drain(n)
			}
		}
		s.train()
		if s.fail != "" {
			return s.fail
		}
		if s.lastFull >= s.o.faultUntil+10 {
			return "" // live again after the faults, with every up node: done
		}
		if s.now > s.o.faultUntil+s.o.liveWithin && s.lastFull < s.o.faultUntil && s.liveExpected() {
			s.violate("liveness: no step in an epoch of all %d up nodes within %d ticks after the faults stopped", s.upCount(), s.o.liveWithin)
		}
	}
	return s.fail
}

// liveExpected reports whether the protocol must make progress: a
// majority of the latest decided epoch is still there (nodes that walked
// away without a graceful leave count as lost), or, before any epoch, at
// least MinMembers nodes are.
func (s *sim) liveExpected() bool {
	var latest *Value
	for _, v := range s.decided {
		if latest == nil || v.Epoch.Number > latest.Epoch.Number {
			latest = v
		}
	}
	if latest == nil {
		return s.upCount() >= s.cfgFor("", HardState{}).MinMembers
	}
	c := 0
	for _, id := range latest.Epoch.Members {
		if n := s.byID[id]; n != nil && !n.gone {
			c++
		}
	}
	return 2*c > len(latest.Epoch.Members)
}

func (s *sim) upCount() int {
	c := 0
	for _, n := range s.nodes {
		if n.up && !n.gone {
			c++
		}
	}
	return c
}
