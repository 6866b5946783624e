// Package membership finds peers by gossip (hashicorp/memberlist) and makes
// them agree on numbered epochs of membership: epoch e is a number and an
// ordered member list (sorted node IDs), and the ring of every collective
// in e follows that order. Callers build a collective group from the Epoch
// that Boundary returns; this package never imports collective.
//
// # Gossip
//
// New starts memberlist, joins the seeds (retrying until JoinTimeout, and
// once more a second later), and gossips compact node metadata (Meta: ID,
// QUIC address, state, protocol version, model fingerprint, data-plane
// settings, held epoch, and for a joining node its step and whether it
// holds state; at most MetaMaxSize bytes, checked before memberlist sees
// it). Gossip is encrypted with a 32-byte key. A peer with another protocol
// version, fingerprint or data-plane settings is refused by the alive and
// merge delegates; the refused node's New returns an error wrapping
// ErrIncompatible. Peers that gossip declared dead are re-joined
// periodically, so the sides of a healed partition meet again (memberlist
// alone never probes dead nodes). Every node runs a control receiver per
// live peer, so it holds a (mostly idle) transport connection to every
// peer: a full mesh, N·(N−1)/2 connections.
//
// # Failure detection
//
// memberlist's SWIM/Lifeguard detector, tuned in LANConfig and LocalConfig
// (config.go), declares a crashed, frozen or cut-off peer dead in about
// 1–2 s. A member then fails it on the endpoint (transport.PeerFailer) and
// cancels the contexts AbortOnDeath handed out for steps that include it,
// so every survivor's collective aborts at once, not at the transport's
// idle timeout. A peer whose metadata said it was leaving is taken to have
// left, not failed. A frozen peer that wakes finds its connections closed
// and rejoins as a newcomer.
//
// # Epoch agreement
//
// The protocol is package agree: a pure state machine (single-decree
// Paxos per base epoch, see its doc) that a seeded simulator runs through
// thousands of fault schedules. A Member runs one driver goroutine
// (driver.go), the only one that touches its machine. It feeds the
// machine the control messages the receivers decode (Step), a ticker at
// half the ResendInterval (Tick; the Config timers are rounded up to
// ticks), gossip's view whenever memberlist reports a change (Observe),
// the peers whose connection the transport lost (Suspect), and the
// training loop's boundaries (Boundary hands its Step to the driver and
// waits). For each Ready it
//   - persists the HardState first (Config.Persist; EncodeHardState is
//     its file format, node.Config.StateFile the file; Config.Hard, or
//     the checkpoint's Config.Held, carries it across a restart), and
//     drops the messages if that fails;
//   - queues each message for its peer (send.go): one sender goroutine
//     per peer, each send bounded by a deadline, a full queue drops, so
//     a peer that does not read never stops the driver;
//   - answers the waiting Boundary with the outcome;
//   - aborts the steps (AbortOnDeath) and, where gossip does not know it,
//     the transport's operations (FailPeer) on members the machine drops;
//   - then calls Advance, and gossips this node's state (joining, active
//     or leaving; its held epoch and whether it was learnt after a lost
//     state; while joining, its step and whether it holds state), which
//     is what the other machines Observe.
//
// Messages travel over transport.Conn on a tag whose Op is at or above
// transport.ControlOpBase, in a versioned binary encoding with bounds
// checks on every length (msg.go, fuzzed). Only senders dial, when the
// machine has a message for a peer; a receiver reads each connection the
// endpoint announces (transport.ConnWatcher, recv.go). So the connections
// a node holds follow whom the protocol addresses: in steady state a
// member reports to its coordinator only, and holds that one connection
// (plus its ring links), the coordinator one per member; the wider
// exchanges of an epoch change leave connections that the endpoint closes
// once idle (quic.Config.IdleClose).
//
// A peer that was dropped from the epoch and comes back (a frozen process
// that wakes, a healed cut) is a newcomer: its report for the old epoch is
// answered with the commit that replaced it (the losses it lists are not
// taken for this epoch's), it learns it is out, and it is admitted at the
// next boundary like any joiner.
//
// # State sync
//
// A commit names a source (a member whose state has the most steps) and
// targets (newcomers and members with fewer steps). Boundary on the source
// streams Config.Snapshot's blob to the targets in chunks; Boundary on a
// target returns only after Config.Restore installed it (if the transfer
// fails, the target reports a failed step in e', which forms the next
// epoch). Members that need
// nothing return at once, and their first collective of e' waits for the
// targets, so admission stops the others only for the transfer.
//
// With neither hook set (deferred sync), Boundary only names the transfer
// in Outcome.Sync; the caller runs SendState on the source and RecvState on
// each target before the epoch's first collective (the C ABI and the
// Python binding hold the state, not Go).
//
// # Invariants
//
//   - All members of an epoch hold the same member list before any of them
//     returns it from Boundary.
//   - No epoch forms without promises and acceptances from a majority of
//     the epoch it replaces (leavers answer but are not members), and a
//     node that held an epoch never forms a first one.
//   - A graceful leave (Step.Leave) is agreed at a boundary: no collective
//     fails because of it.
//   - Only the driver goroutine touches the machine; every goroutine a
//     Member starts (driver, receivers, senders, gossip loops) ends before
//     Close or Crash returns.
package membership
