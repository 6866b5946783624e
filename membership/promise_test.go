package membership

import (
	"context"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/ringtrain/ringtrain/transport/mem"
)

// TestPromiseRules drives one node's acceptor through the rules that make
// an epoch number mean one member list: proposals must replace the node's
// current epoch, one promise per replaced epoch, commits applied only when
// promised. Each step's message comes from the named proposer; the
// expected answer is an acknowledgement, a refusal, or none (for commits
// and aborts), and the node's epoch afterwards.
func TestPromiseRules(t *testing.T) {
	net := mem.NewNetwork()
	ep, err := net.Endpoint("a")
	if err != nil {
		t.Fatal(err)
	}
	peers := map[string]*mem.Endpoint{}
	for _, id := range []string{"p1", "p2"} {
		if peers[id], err = net.Endpoint(id); err != nil {
			t.Fatal(err)
		}
	}
	m := &Member{
		cfg:   Config{ID: "a", Endpoint: ep, AckTimeout: 200 * time.Millisecond, ResendInterval: 50 * time.Millisecond},
		log:   slog.New(slog.DiscardHandler),
		ctx:   context.Background(),
		peers: map[string]*Peer{},
		meta:  Meta{ID: "a", State: StateActive, Protocol: ProtocolVersion},
	}
	m.ag.init()
	m.ag.epoch = Epoch{Number: 5, Members: []string{"a", "b", "p1", "p2"}}
	members := []string{"a", "b", "p1", "p2"}
	// setPeer makes gossip show id alive and active in epoch e.
	setPeer := func(id string, e uint64) {
		m.peers[id] = &Peer{Meta: Meta{ID: id, State: StateActive, Protocol: ProtocolVersion, Epoch: e}, Alive: true}
	}

	const (
		none = iota
		ack
		refuse
	)
	steps := []struct {
		name      string
		from      string
		m         msg
		prepare   func()
		want      int
		wantEpoch uint64
	}{
		{"proposal built on another epoch is refused", "p1",
			msg{Kind: kindPropose, Epoch: 6, Base: 4, Proposer: "p1", Members: members}, nil, refuse, 5},
		{"proposal replacing the current epoch is acknowledged", "p1",
			msg{Kind: kindPropose, Epoch: 6, Base: 5, Proposer: "p1", Members: members}, nil, ack, 5},
		{"repeated proposal is acknowledged again", "p1",
			msg{Kind: kindPropose, Epoch: 6, Base: 5, Proposer: "p1", Members: members}, nil, ack, 5},
		{"a second proposal for the same epoch is refused", "p2",
			msg{Kind: kindPropose, Epoch: 7, Base: 5, Proposer: "p2", Members: members}, nil, refuse, 5},
		{"the first proposer withdraws", "p1",
			msg{Kind: kindAbort, Epoch: 6, Proposer: "p1"}, nil, none, 5},
		{"then the second is acknowledged", "p2",
			msg{Kind: kindPropose, Epoch: 7, Base: 5, Proposer: "p2", Members: members}, nil, ack, 5},
		{"a lower number is refused", "p1",
			msg{Kind: kindPropose, Epoch: 6, Base: 5, Proposer: "p1", Members: members}, nil, refuse, 5},
		{"a commit that was not promised is ignored", "p1",
			msg{Kind: kindCommit, Epoch: 6, Base: 5, Proposer: "p1", Members: members}, nil, none, 5},
		{"the promised commit is applied", "p2",
			msg{Kind: kindCommit, Epoch: 7, Base: 5, Proposer: "p2", Members: members}, nil, none, 7},
		{"a proposal for the new epoch is acknowledged", "p1",
			msg{Kind: kindPropose, Epoch: 8, Base: 7, Proposer: "p1", Members: members}, nil, ack, 7},
		{"the promise holds while its proposer lives", "p2",
			msg{Kind: kindPropose, Epoch: 9, Base: 7, Proposer: "p2", Members: members},
			func() { m.ag.promisedAt = time.Now().Add(-time.Hour) }, refuse, 7},
		{"a promise whose epoch a later one superseded is released", "p2",
			msg{Kind: kindPropose, Epoch: 9, Base: 7, Proposer: "p2", Members: members},
			func() { setPeer("b", 9) }, ack, 7},
		{"a lost proposer's promise holds while a member shows its epoch", "p1",
			msg{Kind: kindPropose, Epoch: 10, Base: 7, Proposer: "p1", Members: members},
			func() { m.ag.promisedAt = time.Now().Add(-time.Hour); m.ag.suspects["p2"] = true }, refuse, 7},
		{"and is released when none does", "p1",
			msg{Kind: kindPropose, Epoch: 10, Base: 7, Proposer: "p1", Members: members},
			func() { setPeer("b", 7) }, ack, 7},
		{"a commit excluding this node leaves it without an epoch", "p1",
			msg{Kind: kindCommit, Epoch: 10, Base: 7, Proposer: "p1", Members: []string{"b", "p1"}}, nil, none, 0},
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, s := range steps {
		if s.prepare != nil {
			s.prepare()
		}
		in := s.m
		in.From = s.from
		var cur Step
		if _, _, err := m.handle(ctx, &in, &cur); err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		if s.want != none {
			c, err := peers[s.from].Conn(ctx, "a")
			if err != nil {
				t.Fatal(err)
			}
			buf := make([]byte, maxControl)
			rctx, rcancel := context.WithTimeout(ctx, time.Second)
			n, err := c.Recv(rctx, controlTag(), buf)
			rcancel()
			if err != nil {
				t.Fatalf("%s: no answer: %v", s.name, err)
			}
			reply, err := unmarshalMsg(buf[:n])
			if err != nil {
				t.Fatal(err)
			}
			if got := reply.Kind == kindAck && reply.Flags&flagOK != 0; got != (s.want == ack) {
				t.Errorf("%s: acknowledged=%v, want %v (reply %+v)", s.name, got, s.want == ack, reply)
			}
		}
		if got := m.ag.epoch.Number; got != s.wantEpoch {
			t.Errorf("%s: epoch %d, want %d", s.name, got, s.wantEpoch)
		}
	}
}

// TestReportedLosses: the peers a report names as lost make the
// coordinator treat them as failed only when a member of the current
// epoch reports them for that epoch. A peer dropped from an earlier epoch
// (a frozen node that woke, a healed cut) reports the losses it saw while
// it was out; taking them would drop a healthy member (the false failure
// the end-to-end SIGSTOP scenario showed).
func TestReportedLosses(t *testing.T) {
	cases := []struct {
		name  string
		from  string
		epoch uint64
		lost  []string
		want  []string // suspects afterwards
	}{
		{"member of the epoch, current epoch", "c", 6, []string{"d"}, []string{"d"}},
		{"a peer not in the epoch is not suspected", "c", 6, []string{"x"}, nil},
		{"this node is never suspected", "c", 6, []string{"a"}, nil},
		{"stale report of a dropped node", "b", 5, []string{"c"}, nil},
		{"stale report of a member", "c", 5, []string{"d"}, nil},
		{"join request (no epoch)", "b", 0, []string{"c"}, nil},
		{"report for a later epoch", "c", 7, []string{"d"}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			net := mem.NewNetwork()
			ep, err := net.Endpoint("a")
			if err != nil {
				t.Fatal(err)
			}
			m := &Member{
				cfg:   Config{ID: "a", Endpoint: ep, AckTimeout: 200 * time.Millisecond, ResendInterval: 50 * time.Millisecond},
				log:   slog.New(slog.DiscardHandler),
				ctx:   context.Background(),
				peers: map[string]*Peer{},
				meta:  Meta{ID: "a", State: StateActive, Protocol: ProtocolVersion},
			}
			m.ag.init()
			m.ag.epoch = Epoch{Number: 6, Members: []string{"a", "c", "d", "e"}}
			in := msg{Kind: kindReport, From: tc.from, Epoch: tc.epoch, Seq: 1, Lost: tc.lost}
			var cur Step
			if _, _, err := m.handle(context.Background(), &in, &cur); err != nil {
				t.Fatal(err)
			}
			var got []string
			for p := range m.ag.suspects {
				got = append(got, p)
			}
			slices.Sort(got)
			if !slices.Equal(got, tc.want) {
				t.Errorf("suspects %v, want %v", got, tc.want)
			}
		})
	}
}
