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
// QUIC address, state, protocol version, model fingerprint, epoch; at most
// MetaMaxSize bytes, checked before memberlist sees it). Gossip is encrypted
// with a 32-byte key. A peer with another protocol version or fingerprint
// is refused by the alive and merge delegates; the refused node's New
// returns an error wrapping ErrIncompatible. Peers that gossip declared
// dead are re-joined periodically, so the sides of a healed partition meet
// again (memberlist alone never probes dead nodes). Every node runs a
// control receiver per live peer, so it holds a (mostly idle) transport
// connection to every peer: a full mesh, N·(N−1)/2 connections.
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
// The training loop calls Boundary between steps. Each member reports (its
// step count, whether the step failed, peers the transport said were lost,
// whether it leaves) to the coordinator of its epoch: the lowest member
// that gossip and the transport do not consider lost, which is the epoch's
// leader while it lives. The coordinator waits for every live member, then
//   - answers "continue" when nothing changed (one control round trip per
//     step), or
//   - proposes epoch e' (a number above any it heard of, naming e as its
//     base) with the reporters minus leavers plus newcomers that asked to
//     join; every member of e' must acknowledge; then it commits e' to the
//     members and the reporters.
//
// A node acknowledges a proposal only if it replaces the node's current
// epoch, carries a higher number than any it promised, and no other
// proposal replacing that epoch is promised. A promise ends when its
// proposer withdraws it, when a commit replaces the epoch, when gossip
// shows a member of the proposal running a later epoch, or when the
// proposer is lost, twice AckTimeout passed, and no member of the proposal
// shows its epoch. A member applies a commit only if it is the proposal it
// promised; one that sees (by gossip) a member of its promised proposal
// already running it asks that member to resend the commit it missed.
//
// A proposal needs reports from a majority of e's members, so a
// partition's minority never forms an epoch; it waits, and once gossip
// shows a newer epoch it drops its own and asks to be admitted like a
// newcomer. Nodes left out of a commit (excluded, late) become newcomers
// too. Control messages travel over transport.Conn
// on tags whose Op is at or above transport.ControlOpBase, in a small
// versioned binary encoding with bounds checks (msg.go).
//
// # State sync
//
// A commit names a source (a member whose state has the most steps) and
// targets (newcomers and members with fewer steps). Boundary on the source
// streams Config.Snapshot's blob to the targets in chunks; Boundary on a
// target returns only after Config.Restore installed it. Members that need
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
//   - No epoch forms without a majority of the previous epoch's members.
//   - A graceful leave (Step.Leave) is agreed at a boundary: no collective
//     fails because of it.
//
// # The agreement machine (membership/agree)
//
// Package agree holds the protocol as a pure state machine (Step, Tick,
// Observe, Suspect, Boundary in; Ready out) using single-decree Paxos per
// base epoch: a successor needs promises and acceptances from a majority
// of the base's members (leavers answer but are not members), a proposer
// adopts any value already accepted, and the durable HardState keeps
// promises across restarts. Its seeded simulator checks the invariants
// over 10,000 random fault schedules. This driver does not run it yet; it
// carries the interim fixes instead: a proposal here needs acknowledgements
// from a majority of the base epoch (leavers included), a node that held
// an epoch (Config.Held, Member.Held) forms no first epoch without a
// majority of it, a resent report that was answered gets its "continue"
// again, a deadline is not a loss, and acknowledgements are sent in the
// background.
//
// Known limit: promise release trusts gossip. If a proposer committed to
// the other members but was cut off from this one, and gossip did not show
// this node any member running the committed epoch within 2×AckTimeout,
// this node may join a competing proposal; the committed epoch then lacks
// a member, its collectives fail, and its remaining members could re-form
// without this node if they are a majority of it. Paxos-style recovery (a
// new proposer re-proposing an accepted member list) would close this; it
// does not fit the all-members acknowledgement used here and is not done.
package membership
