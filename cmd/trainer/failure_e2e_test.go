package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ringtrain/ringtrain/bench/netns"
	"github.com/ringtrain/ringtrain/model"
)

// Failure detection end to end: 5 trainer processes, each in its own
// network namespace behind a shaped veth link (bench/netns), train one job
// through four losses in a row: kill -9 of a member and of the leader
// (each replaced by a fresh node in its namespace), a 10 s SIGSTOP of a
// member and a 15 s cut of the leader's link (each back as a newcomer).
// Each loss is timed from the event to the moment every survivor has
// applied a step in an epoch without the lost peer (target ≤ 3 s). At the
// end every node holds the same parameters, no sample position of a data
// epoch was used by two applied steps, and no epoch changed but those the
// events explain (no false failure).

const (
	fdPeers  = 5
	fdPre    = 15 // steps before the first event
	fdSettle = 8  // steps the full cluster trains between events
	fdTail   = 10 // steps after the last event
	fdBatch  = 32
	// fdRate shapes every link. It caps the step rate (each link carries
	// 2(n−1)/n of the MLP's gradient per step), so that a fast machine
	// cannot reach the job's last step before the scenario is over.
	fdRate = "40mbit"
	// fdTarget is the bound on the time to train again.
	fdTarget = 3 * time.Second
)

type fdEvent struct {
	name string
	// victim picks the node to lose among the current members, in ring
	// order (the leader first).
	victim func(ring []*node) *node
	outage time.Duration // > 0: the victim comes back as a newcomer after it
	// replace: the victim is gone for good; a fresh node takes its place.
	replace bool
	// lose starts the event; the returned func ends it (outage > 0).
	lose func(t *testing.T, c *nsCluster, v *node) (heal func())
}

func TestFailureDetectionE2E(t *testing.T) {
	if err := netns.CheckRoot(); err != nil {
		// CI runs as root with iproute2: this only skips on a
		// developer's unprivileged machine.
		t.Skip(err)
	}
	signal := func(sig syscall.Signal) func(*testing.T, *nsCluster, *node) func() {
		return func(t *testing.T, c *nsCluster, v *node) func() {
			if err := v.cmd.Process.Signal(sig); err != nil {
				t.Fatal(err)
			}
			return func() { v.cmd.Process.Signal(syscall.SIGCONT) }
		}
	}
	cut := func(t *testing.T, c *nsCluster, v *node) func() {
		// The bridge side of the victim's veth: its own interface and
		// addresses stay as they are, like a cable pulled at the switch.
		port := "p" + strconv.Itoa(c.slotOf(v))
		c.ip(t, "-n", c.top.Bridge, "link", "set", port, "down")
		return func() { c.ip(t, "-n", c.top.Bridge, "link", "set", port, "up") }
	}
	leader := func(ring []*node) *node { return ring[0] }
	last := func(ring []*node) *node { return ring[len(ring)-1] }
	second := func(ring []*node) *node { return ring[1] }
	events := []fdEvent{
		{name: "kill -9 of a member", victim: last, replace: true, lose: signal(syscall.SIGKILL)},
		{name: "kill -9 of the leader", victim: leader, replace: true, lose: signal(syscall.SIGKILL)},
		{name: "10 s SIGSTOP of a member", victim: second, outage: 10 * time.Second, lose: signal(syscall.SIGSTOP)},
		{name: "15 s cut of the leader's link", victim: leader, outage: 15 * time.Second, lose: cut},
	}
	runFailures(t, events)
}

// nsCluster is the trainer processes of one job, one namespace (slot) each.
type nsCluster struct {
	top    *netns.Topology
	bin    string
	dir    string
	secret string
	args   []string
	slots  []*node // the node now running in each namespace
	all    []*node // every process started
	nextID int
}

func (c *nsCluster) slotOf(n *node) int { return slices.Index(c.slots, n) }

// ring is the current nodes in ring order (by ID; the leader first).
func (c *nsCluster) ring() []*node {
	r := slices.Clone(c.slots)
	slices.SortFunc(r, func(a, b *node) int { return strings.Compare(a.id, b.id) })
	return r
}

func (c *nsCluster) ip(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		t.Fatalf("ip %v: %v: %s", args, err, out)
	}
}

// start runs a fresh node in namespace slot i.
func (c *nsCluster) start(t *testing.T, i int) *node {
	t.Helper()
	id := fmt.Sprintf("node-%d", c.nextID)
	c.nextID++
	n := &node{id: id, dir: filepath.Join(c.dir, id), done: make(chan error, 1)}
	os.MkdirAll(n.dir, 0o755)
	addr := c.top.Peers[i].Addr.String()
	a := []string{"--node-id", id, "--listen", addr + ":7946", "--quic-listen", addr + ":7947",
		"--log-format", "json", "--progress", "log", "--log-steps", "--summary-json", filepath.Join(n.dir, "summary.json")}
	// Seeds: every namespace but this one (the first node has none).
	var seeds []string
	for j, p := range c.top.Peers {
		if j != i && c.slots[j] != nil {
			seeds = append(seeds, p.Addr.String()+":7946")
		}
	}
	if len(seeds) > 0 {
		a = append(a, "--seeds", strings.Join(seeds, ","))
	}
	// ip netns exec execs the trainer: signals reach it directly.
	n.cmd = c.top.Command(context.Background(), i, c.bin, append(append(a, c.args...), "--min-peers", strconv.Itoa(fdPeers))...)
	n.cmd.Env = append(os.Environ(), "RINGTRAIN_SECRET="+c.secret)
	spawn(t, n)
	c.slots[i] = n
	c.all = append(c.all, n)
	return n
}

// newNSCluster builds the namespaces and cleans them (and every process
// in them) up at the end of the test.
func newNSCluster(t *testing.T, steps int) *nsCluster {
	ctx := context.Background()
	if _, err := netns.CleanupStale(ctx); err != nil {
		t.Log(err)
	}
	bin := buildTrainer(t)
	top, err := netns.Setup(ctx, netns.Config{Peers: fdPeers, Rate: fdRate})
	if err != nil {
		t.Fatal(err)
	}
	c := &nsCluster{top: top, bin: bin, dir: t.TempDir(), secret: "failure-e2e-secret-0123456789", slots: make([]*node, fdPeers),
		args: []string{"--model", "mlp", "--batch", strconv.Itoa(fdBatch), "--steps", strconv.Itoa(steps), "--eval-every", "1000000"}}
	t.Cleanup(func() {
		for _, n := range c.all {
			n.cmd.Process.Signal(syscall.SIGCONT)
			n.cmd.Process.Kill()
		}
		for _, n := range c.all {
			select {
			case <-n.exited:
			case <-time.After(10 * time.Second):
				t.Errorf("%s did not exit", n.id)
			}
		}
		if err := top.Close(); err != nil {
			t.Error(err)
		}
		if t.Failed() || os.Getenv("RINGTRAIN_E2E_LOGS") != "" {
			c.dumpLogs(t)
		}
	})
	for i := range fdPeers {
		n := c.start(t, i)
		if i == 0 {
			n.waitFor(t, 30*time.Second, func(r map[string]any) bool { return r["msg"] == "listening" })
		}
	}
	return c
}

// stepRecord is one "step" log line (--log-steps).
type stepRecord struct {
	node                        string
	at                          time.Time
	step, dataEpoch, epoch      uint64
	lo, hi, global, peers, rank int
}

func (n *node) steps(t *testing.T) []stepRecord {
	t.Helper()
	n.mu.Lock()
	defer n.mu.Unlock()
	var out []stepRecord
	for _, r := range n.recs {
		if r["msg"] != "step" {
			continue
		}
		num := func(k string) int { f, _ := r[k].(float64); return int(f) }
		out = append(out, stepRecord{node: n.id, at: recTime(t, r), step: uint64(num("step")), dataEpoch: uint64(num("data_epoch")),
			epoch: uint64(num("membership_epoch")), lo: num("lo"), hi: num("hi"), global: num("global"), peers: num("peers"), rank: num("rank")})
	}
	return out
}

func recTime(t *testing.T, r map[string]any) time.Time {
	t.Helper()
	s, _ := r["time"].(string)
	at, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		t.Fatalf("log time %q: %v", s, err)
	}
	return at
}

// epochs returns the membership epochs a node entered, in order.
func (n *node) epochs() []uint64 {
	n.mu.Lock()
	defer n.mu.Unlock()
	var out []uint64
	for _, r := range n.recs {
		if r["msg"] == "membership epoch" {
			f, _ := r["epoch"].(float64)
			out = append(out, uint64(f))
		}
	}
	return out
}

// firstStep returns n's first step applied at or after from that matches
// pred.
func firstStep(t *testing.T, n *node, from time.Time, pred func(stepRecord) bool) (stepRecord, bool) {
	for _, s := range n.steps(t) {
		if !s.at.Before(from) && pred(s) {
			return s, true
		}
	}
	return stepRecord{}, false
}

// waitStep polls until n has applied a step at or after from matching pred.
func waitStep(t *testing.T, n *node, from time.Time, d time.Duration, what string, pred func(stepRecord) bool) stepRecord {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		if s, ok := firstStep(t, n, from, pred); ok {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %s not within %v", n.id, what, d)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// dumpLogs shows each node's last log lines other than steps and progress
// (all of them into $RINGTRAIN_E2E_LOGS/<node>.jsonl when that is set).
func (c *nsCluster) dumpLogs(t *testing.T) {
	dir := os.Getenv("RINGTRAIN_E2E_LOGS")
	for _, n := range c.all {
		n.mu.Lock()
		var lines []string
		var f *os.File
		if dir != "" {
			f, _ = os.Create(filepath.Join(dir, n.id+".jsonl"))
		}
		for _, r := range n.recs {
			b, _ := json.Marshal(r)
			if f != nil {
				f.Write(append(b, '\n'))
			}
			if r["msg"] != "step" && r["msg"] != "progress" {
				lines = append(lines, string(b))
			}
		}
		n.mu.Unlock()
		if f != nil {
			f.Close()
		}
		t.Logf("%s: last log lines:\n%s", n.id, strings.Join(lines[max(0, len(lines)-15):], "\n"))
	}
}

// waitFull waits until every current node has applied a step at or after
// from, numbered at least minStep, with all fdPeers in the ring; it
// returns the latest such step seen.
func (c *nsCluster) waitFull(t *testing.T, from time.Time, minStep uint64) stepRecord {
	t.Helper()
	var last stepRecord
	for _, n := range c.slots {
		s := waitStep(t, n, from, 2*time.Minute, fmt.Sprintf("a step ≥ %d with %d peers", minStep, fdPeers),
			func(s stepRecord) bool { return s.peers == fdPeers && s.step >= minStep })
		if s.step > last.step {
			last = s
		}
	}
	return last
}

func runFailures(t *testing.T, events []fdEvent) {
	steps := fdSteps(t, events)
	c := newNSCluster(t, steps)
	initial := slices.Clone(c.slots)
	full := c.waitFull(t, time.Time{}, fdPre)
	healed := time.Time{}
	victims := map[*node]bool{}
	for _, ev := range events {
		full = c.waitFull(t, healed, full.step+fdSettle)
		ring := c.ring()
		victim := ev.victim(ring)
		victims[victim] = true
		var survivors []*node
		for _, n := range ring {
			if n != victim {
				survivors = append(survivors, n)
			}
		}
		before, _ := lastStepBefore(t, victim, time.Now())
		event := time.Now()
		heal := ev.lose(t, c, victim)
		without := func(s stepRecord) bool { return s.epoch > full.epoch && s.peers == fdPeers-1 }
		var resumed time.Duration
		var dropEpoch uint64
		for _, n := range survivors {
			s := waitStep(t, n, event, 30*time.Second, "a step without "+victim.id, without)
			resumed = max(resumed, s.at.Sub(event))
			dropEpoch = s.epoch
		}
		t.Logf("figure: %s (%s, of %d, %s links): gossip declared it dead after %s; every survivor trained again (a step in epoch %d without it) %v after the event",
			ev.name, victim.id, fdPeers, fdRate, firstDeath(t, survivors, victim.id, event), dropEpoch, resumed.Round(time.Millisecond))
		if resumed > fdTarget {
			t.Errorf("%s: survivors trained again %v after the event, target %v", ev.name, resumed.Round(time.Millisecond), fdTarget)
		}
		switch {
		case ev.outage > 0:
			time.Sleep(time.Until(event.Add(ev.outage)))
			healed = time.Now()
			heal()
			// Back as a newcomer: admitted into a later epoch than the
			// survivors' and synced to their state, not resuming its own.
			s := waitStep(t, victim, healed, time.Minute, "a step after rejoining", func(s stepRecord) bool { return s.peers == fdPeers })
			t.Logf("figure: %s: %s back %v after the end of the outage, as a newcomer in epoch %d at step %d (its last step before: %d in epoch %d)",
				ev.name, victim.id, s.at.Sub(healed).Round(time.Millisecond), s.epoch, s.step, before.step, before.epoch)
			if s.epoch <= dropEpoch || s.step <= before.step+1 {
				t.Errorf("%s did not rejoin as a newcomer: first step %d in epoch %d after step %d in epoch %d; survivors' epoch %d",
					victim.id, s.step, s.epoch, before.step, before.epoch, dropEpoch)
			}
		case ev.replace:
			<-victim.exited
			healed = time.Now()
			n := c.start(t, c.slotOf(victim))
			s := waitStep(t, n, healed, time.Minute, "a first step", func(s stepRecord) bool { return s.peers == fdPeers })
			t.Logf("%s: replacement %s trains from step %d in epoch %d, %v after it started", ev.name, n.id, s.step, s.epoch, s.at.Sub(healed).Round(time.Millisecond))
		}
	}

	finishers := c.ring()
	for _, n := range finishers {
		n.wait(t, 3*time.Minute)
	}
	checkFinish(t, finishers, uint64(steps))
	// Spurious epoch changes: each event explains two (the drop, then
	// the rejoin or the replacement) after the first.
	want := 1 + 2*len(events)
	for _, n := range initial {
		if slices.Contains(finishers, n) && !victims[n] {
			if e := n.epochs(); len(e) != want {
				t.Errorf("%s entered %d epochs %v, want %d (a false failure?)", n.id, len(e), e, want)
			} else {
				t.Logf("figure: %s entered %d epochs, as the %d events explain: no false failure", n.id, len(e), len(events))
			}
		}
	}
}

// fdSteps sizes the job so that it outlasts the events at the highest
// step rate the shaped links allow.
func fdSteps(t *testing.T, events []fdEvent) int {
	t.Helper()
	m, err := model.NewMLP(1)
	if err != nil {
		t.Fatal(err)
	}
	bps, err := netns.ParseRate(fdRate)
	if err != nil {
		t.Fatal(err)
	}
	perLink := 4 * float64(len(m.Params())) * 2 * (fdPeers - 1) / fdPeers * 8
	maxRate := bps / perLink // steps per second, at most
	var busy time.Duration
	for _, ev := range events {
		busy += ev.outage + 6*time.Second // detection, rejoin or replacement, slack
	}
	return fdPre + len(events)*fdSettle + int(busy.Seconds()*maxRate) + fdTail
}

func lastStepBefore(t *testing.T, n *node, at time.Time) (stepRecord, bool) {
	var last stepRecord
	ok := false
	for _, s := range n.steps(t) {
		if s.at.Before(at) {
			last, ok = s, true
		}
	}
	return last, ok
}

// firstDeath is the time from event to the first survivor's log that
// gossip declared the victim dead ("-" if none did).
func firstDeath(t *testing.T, survivors []*node, victim string, event time.Time) string {
	var first time.Duration = -1
	for _, n := range survivors {
		n.mu.Lock()
		for _, r := range n.recs {
			if msg, _ := r["msg"].(string); strings.HasPrefix(msg, "gossip declared peer dead") && r["peer"] == victim {
				if d := recTime(t, r).Sub(event); d >= 0 && (first < 0 || d < first) {
					first = d
				}
			}
		}
		n.mu.Unlock()
	}
	if first < 0 {
		return "-"
	}
	return first.Round(time.Millisecond).String()
}

// checkFinish checks the end of the job: every finisher ran all steps and
// holds the same parameters, and the applied steps used every sample
// position at most once.
func checkFinish(t *testing.T, finishers []*node, steps uint64) {
	t.Helper()
	first := finishers[0].summary(t)
	for _, n := range finishers {
		s := n.summary(t)
		if s.Digest != first.Digest || s.Steps != steps {
			t.Errorf("%s: digest %s at step %d; %s: %s at step %d; want all at step %d", s.Node, s.Digest, s.Steps, first.Node, first.Digest, first.Steps, steps)
		}
	}
	var all []stepRecord
	for _, n := range finishers {
		all = append(all, n.steps(t)...)
	}
	if err := checkSamples(all, steps); err != nil {
		t.Error(err)
	}
	t.Logf("%d finishers at step %d with digest %s; %d step records checked", len(finishers), first.Steps, first.Digest, len(all))
}

// checkSamples verifies the step records of the nodes that finished: each
// step number was applied in one membership epoch only, by distinct ranks
// whose shares lie in one global batch; consecutive steps' batches tile
// their data epoch (no position used twice, none skipped); every step of
// the job was applied by some finisher.
func checkSamples(recs []stepRecord, steps uint64) error {
	type batch struct {
		epoch, dataEpoch uint64
		cursor, global   int
		peers            int
		ranks            map[int]string
	}
	byStep := map[uint64]*batch{}
	for _, r := range recs {
		if r.peers <= 0 || r.rank < 0 || r.rank >= r.peers {
			return fmt.Errorf("%s: step %d: rank %d of %d", r.node, r.step, r.rank, r.peers)
		}
		cursor := r.lo - r.rank*r.global/r.peers
		b := byStep[r.step]
		if b == nil {
			b = &batch{epoch: r.epoch, dataEpoch: r.dataEpoch, cursor: cursor, global: r.global, peers: r.peers, ranks: map[int]string{}}
			byStep[r.step] = b
		}
		if b.epoch != r.epoch || b.dataEpoch != r.dataEpoch || b.cursor != cursor || b.global != r.global || b.peers != r.peers {
			return fmt.Errorf("step %d applied twice: by %s in membership epoch %d (data epoch %d, positions from %d, %d samples, %d peers) and in epoch %d (data epoch %d, from %d, %d samples, %d peers)",
				r.step, r.node, r.epoch, r.dataEpoch, cursor, r.global, r.peers, b.epoch, b.dataEpoch, b.cursor, b.global, b.peers)
		}
		if other, dup := b.ranks[r.rank]; dup && other != r.node {
			return fmt.Errorf("step %d: rank %d applied by %s and %s", r.step, r.rank, other, r.node)
		}
		b.ranks[r.rank] = r.node
		if want := cursor + (r.rank+1)*r.global/r.peers; r.hi != want {
			return fmt.Errorf("%s: step %d: share [%d, %d), want [%d, %d)", r.node, r.step, r.lo, r.hi, r.lo, want)
		}
	}
	for s := range steps {
		b := byStep[s]
		if b == nil {
			return fmt.Errorf("step %d applied by no finisher", s)
		}
		if s == 0 {
			if b.cursor != 0 || b.dataEpoch != 0 {
				return fmt.Errorf("step 0 starts at data epoch %d position %d", b.dataEpoch, b.cursor)
			}
			continue
		}
		p := byStep[s-1]
		next := p.dataEpoch == b.dataEpoch && b.cursor == p.cursor+p.global
		wrap := b.dataEpoch == p.dataEpoch+1 && b.cursor == 0
		if !next && !wrap {
			return fmt.Errorf("step %d (data epoch %d, positions [%d, %d)) does not follow step %d (data epoch %d, [%d, %d))",
				s, b.dataEpoch, b.cursor, b.cursor+b.global, s-1, p.dataEpoch, p.cursor, p.cursor+p.global)
		}
	}
	return nil
}

var fpDuration = flag.Duration("fp-duration", 20*time.Second, "how long TestNoFalseFailureE2E runs the loaded 5-node job (the false-positive measurement)")

// TestNoFalseFailureE2E measures the failure detector's false positives: 5
// healthy trainers in their namespaces train while two other processes
// keep every core of the machine busy; no peer may be declared dead and
// the epoch must never change. -fp-duration sets how long (minutes for a
// measurement; the default keeps CI short).
func TestNoFalseFailureE2E(t *testing.T) {
	if err := netns.CheckRoot(); err != nil {
		t.Skip(err) // CI runs as root with iproute2
	}
	c := newNSCluster(t, 1000000)
	c.waitFull(t, time.Time{}, fdPre)
	// The load: spinning shells, one per core, at the trainers' priority.
	var burners []*exec.Cmd
	for range runtime.NumCPU() {
		b := exec.Command("sh", "-c", "while :; do :; done")
		if err := b.Start(); err != nil {
			t.Fatal(err)
		}
		burners = append(burners, b)
	}
	defer func() {
		for _, b := range burners {
			b.Process.Kill()
			b.Wait()
		}
	}()
	start := time.Now()
	first := map[*node]uint64{}
	for _, n := range c.slots {
		s, _ := lastStepBefore(t, n, start)
		first[n] = s.step
	}
	time.Sleep(*fpDuration)
	var deaths, changes int
	var steps uint64
	for _, n := range c.slots {
		n.mu.Lock()
		for _, r := range n.recs {
			if msg, _ := r["msg"].(string); strings.HasPrefix(msg, "gossip declared peer dead") || msg == "step failed; forming the next epoch" {
				deaths++
				t.Logf("%s: %s: %v", n.id, msg, r)
			}
		}
		n.mu.Unlock()
		changes += len(n.epochs()) - 1
		last, _ := lastStepBefore(t, n, time.Now())
		steps = max(steps, last.step-first[n])
	}
	t.Logf("figure: false positives: %d healthy trainers (%s links) for %v with %d CPU-burning processes on %d cores: %d steps, %d deaths declared or steps failed, %d epoch changes",
		fdPeers, fdRate, time.Since(start).Round(time.Second), len(burners), runtime.NumCPU(), steps, deaths, changes)
	if deaths != 0 || changes != 0 {
		t.Errorf("%d false failures, %d spurious epoch changes", deaths, changes)
	}
}
