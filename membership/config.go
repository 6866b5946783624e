package membership

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/ringtrain/ringtrain/membership/agree"
	"github.com/ringtrain/ringtrain/transport"
)

// HardState is the agreement's durable state (see agree.HardState): what a
// node must keep across a restart so that it never breaks a promise.
type HardState = agree.HardState

// Config configures a Member. Start from LANConfig or LocalConfig and fill in
// the node's identity, seeds, key, endpoint and state hooks.
type Config struct {
	ID          string // node ID: unique, at most 64 bytes; also the gossip name
	QUICAddr    string // data-plane address advertised to peers
	Fingerprint string // model fingerprint; peers must match exactly
	Plane       string // data-plane settings (Meta.Plane); peers must match exactly
	// ProtocolVersion overrides ProtocolVersion when non-zero (tests use it
	// to build an incompatible peer).
	ProtocolVersion uint8

	// Gossip is the memberlist configuration (timers, bind address, and
	// optionally Transport). New copies it and sets Name, delegates, key
	// and logger.
	Gossip *memberlist.Config
	// Seeds are "host:port" gossip addresses to join through. Empty: this
	// node is the first.
	Seeds []string
	// JoinTimeout bounds the retries of the initial join.
	JoinTimeout time.Duration
	// GossipKey is the 32-byte AES-256-GCM key for gossip. Nil is refused
	// unless Insecure is set.
	GossipKey []byte
	// Insecure allows unencrypted gossip (explicit opt-in).
	Insecure bool

	// Endpoint carries control messages and state sync.
	Endpoint transport.Endpoint
	// DataEndpoint, if set, is the endpoint the epoch's collectives run
	// on when it is not Endpoint (a node whose gradients travel over
	// TCP): the failure detector's verdicts fail its operations too
	// (when it implements transport.PeerFailer).
	DataEndpoint transport.Endpoint
	// MinMembers is the size of the first epoch: the lowest node waits for
	// this many compatible nodes before proposing epoch 1.
	MinMembers int

	// Snapshot returns this node's training state (parameters, optimizer
	// state, step, data cursor) for a peer that is behind. Called at a step
	// boundary; the slice is not modified afterwards by membership.
	// Snapshot and Restore are both set (eager sync: Boundary transfers
	// the state) or both nil (deferred sync: Boundary only names the
	// transfer in Outcome.Sync, and the caller runs SendState/RecvState
	// before the epoch's first collective).
	Snapshot func() ([]byte, error)
	// Restore installs state received from a peer; called inside Boundary
	// before it returns the new epoch.
	Restore func(state []byte) error
	// Held is the last epoch this node applied before it restarted, as
	// Member.Held returned it into the trainer's checkpoint (zero for a
	// fresh node). A node that held an epoch never takes part in a first
	// epoch: it is admitted by a running epoch, or re-forms its held
	// epoch's successor with a majority of that epoch's members. Ignored
	// when Hard holds an epoch.
	Held Epoch
	// Hard is the agreement's durable state from before a restart (the
	// last state Persist received; zero for a fresh node): the held epoch
	// and this node's promise and accepted value for its successor.
	// Restoring it keeps a restarted node from breaking a promise.
	Hard HardState
	// Persist, if set, receives the agreement's durable state each time
	// it changes, before any message that depends on it is sent. It is
	// called from the member's driver goroutine, which waits for it: keep
	// it to a write and a sync. If it fails, those messages are dropped
	// (as if lost) and the pending Boundary returns the error.
	Persist func(HardState) error
	// OnRoster, if set, receives every roster change (synchronously, from
	// memberlist's event goroutine: it must not block). Use it to register
	// peers' QUIC addresses with the endpoint.
	OnRoster func(Roster)

	// ResendInterval is how often a waiting node resends its report. The
	// agreement machine ticks twice per interval; the timers below are
	// rounded up to whole ticks.
	ResendInterval time.Duration
	// AckTimeout bounds one phase of an agreement round (prepare or
	// accept), and each control message send.
	AckTimeout time.Duration
	// ReportTimeout is how long a coordinator waits for a member that
	// gossip still sees alive but that does not report; after it the member
	// is treated as lost.
	ReportTimeout time.Duration
	// FailureWait is how long a coordinator waits for the remaining
	// members after a failed step was reported.
	FailureWait time.Duration
	// SettleTime is how long the roster must stay unchanged before the
	// first epoch is proposed.
	SettleTime time.Duration
	// ReconnectInterval is how often peers seen failed are re-joined (so
	// both sides of a healed partition find each other again).
	ReconnectInterval time.Duration
	// ChunkBytes is the state sync chunk size.
	ChunkBytes int

	// Logger receives membership logs; memberlist's own (noisy) log goes
	// to it at debug level. Nil discards.
	Logger *slog.Logger
}

// Failure detection. A training ring stalls while it waits on a dead
// peer, so gossip must declare death within about 2 s (issue: survivors
// train again ≤ 3 s after a crash or a freeze), yet never accuse a healthy
// peer on a loaded machine. memberlist's detector (SWIM with Lifeguard)
// gives both if tuned: a probe that gets no direct ack within
// ProbeTimeout is retried through IndirectChecks other members and over
// TCP until the end of its ProbeInterval; only then is the peer
// suspected, and it is declared dead after the suspicion timeout unless it
// refutes (a live peer refutes as soon as it hears the suspicion, so a
// false accusation needs a peer stalled for the whole timeout). The
// timeout is SuspicionMult·max(1, log10 n)·ProbeInterval when another
// member confirms the suspicion, up to SuspicionMaxTimeoutMult times that
// without confirmation. Lifeguard stretches a node's own probe timers
// while it misses acks, so a starved node does not accuse the others.
//
// With these values and n ≤ 10: suspected 0.3–0.6 s after death, dead
// 0.9–1.8 s later; at n = 100 the suspicion timeout doubles (log10).
const (
	failProbeInterval  = 300 * time.Millisecond
	failProbeTimeout   = 150 * time.Millisecond
	failIndirectChecks = 3
	failSuspicionMult  = 3
	failSuspicionMax   = 2
	failGossipInterval = 100 * time.Millisecond
)

// tuneFailureDetection sets memberlist's failure detector timings (see
// the constants above) on g.
func tuneFailureDetection(g *memberlist.Config) {
	g.ProbeInterval = failProbeInterval
	g.ProbeTimeout = failProbeTimeout
	g.IndirectChecks = failIndirectChecks
	g.SuspicionMult = failSuspicionMult
	g.SuspicionMaxTimeoutMult = failSuspicionMax
	g.GossipInterval = failGossipInterval
}

// LANConfig returns memberlist's LAN defaults and timers suited to a
// cluster on one network, with the failure detector tuned to declare a
// dead peer within about 2 s (tuneFailureDetection).
func LANConfig() Config {
	g := memberlist.DefaultLANConfig()
	tuneFailureDetection(g)
	return Config{
		Gossip:            g,
		JoinTimeout:       60 * time.Second,
		ResendInterval:    time.Second,
		AckTimeout:        5 * time.Second,
		ReportTimeout:     120 * time.Second,
		FailureWait:       5 * time.Second,
		SettleTime:        2 * time.Second,
		ReconnectInterval: 10 * time.Second,
		ChunkBytes:        256 << 10,
	}
}

// LocalConfig returns timers measured on loopback: memberlist's local
// defaults with RetransmitMult 4, PushPullInterval 5 s and the failure
// detector of LANConfig (tuneFailureDetection), bound to 127.0.0.1 on a
// free port.
func LocalConfig() Config {
	g := memberlist.DefaultLocalConfig()
	g.BindAddr = "127.0.0.1"
	g.BindPort = 0
	g.AdvertisePort = 0
	g.RetransmitMult = 4
	g.PushPullInterval = 5 * time.Second
	tuneFailureDetection(g)
	return Config{
		Gossip:            g,
		JoinTimeout:       10 * time.Second,
		ResendInterval:    250 * time.Millisecond,
		AckTimeout:        2 * time.Second,
		ReportTimeout:     30 * time.Second,
		FailureWait:       2 * time.Second,
		SettleTime:        300 * time.Millisecond,
		ReconnectInterval: time.Second,
		ChunkBytes:        64 << 10,
	}
}

func (c *Config) validate() error {
	switch {
	case c.ID == "" || len(c.ID) > maxIDLen:
		return fmt.Errorf("membership: node ID %q: length must be 1..%d", c.ID, maxIDLen)
	case c.Gossip == nil:
		return fmt.Errorf("membership: node %s: Config.Gossip is nil (start from LANConfig or LocalConfig)", c.ID)
	case c.Endpoint == nil:
		return fmt.Errorf("membership: node %s: Config.Endpoint is nil", c.ID)
	case c.Endpoint.ID() != c.ID:
		return fmt.Errorf("membership: node %s: endpoint ID %q differs", c.ID, c.Endpoint.ID())
	case c.GossipKey == nil && !c.Insecure:
		return fmt.Errorf("membership: node %s: no gossip key (set GossipKey, or Insecure to opt out of encryption)", c.ID)
	case c.GossipKey != nil && len(c.GossipKey) != 32:
		return fmt.Errorf("membership: node %s: gossip key has %d bytes, want 32", c.ID, len(c.GossipKey))
	case (c.Snapshot == nil) != (c.Restore == nil):
		return fmt.Errorf("membership: node %s: set both Snapshot and Restore (eager sync) or neither (deferred sync)", c.ID)
	case c.ChunkBytes <= 0 || c.ChunkBytes > maxChunk:
		return fmt.Errorf("membership: node %s: ChunkBytes %d not in 1..%d", c.ID, c.ChunkBytes, maxChunk)
	case c.ResendInterval <= 0 || c.AckTimeout <= 0 || c.ReportTimeout <= 0 || c.FailureWait <= 0 || c.JoinTimeout <= 0:
		return fmt.Errorf("membership: node %s: timers must be positive", c.ID)
	}
	if c.MinMembers < 1 {
		c.MinMembers = 1
	}
	if c.ProtocolVersion == 0 {
		c.ProtocolVersion = ProtocolVersion
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Hard.Held.Number == 0 && c.Held.Number != 0 {
		c.Hard = HardState{Held: agree.Epoch{Number: c.Held.Number, Members: ringOrder(c.Held.Members)}}
	}
	return nil
}

// tick is the agreement machine's clock period.
func (c *Config) tick() time.Duration { return max(c.ResendInterval/2, time.Millisecond) }

// machine returns the agreement machine's configuration: the timers in
// ticks, rounded up.
func (c *Config) machine() agree.Config {
	tick := c.tick()
	ticks := func(d time.Duration) int { return max(1, int((d+tick-1)/tick)) }
	return agree.Config{
		ID:           c.ID,
		MinMembers:   c.MinMembers,
		Hard:         c.Hard,
		ResendTicks:  2,
		ReportTicks:  ticks(c.ReportTimeout),
		FailureTicks: ticks(c.FailureWait),
		PhaseTicks:   ticks(c.AckTimeout),
		SettleTicks:  ticks(c.SettleTime),
		// A join request stays valid for 24 resend intervals: a joiner
		// resends every two ticks, so only a silent one expires.
		JoinTicks: 48,
	}
}
