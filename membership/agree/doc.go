// Package agree is the epoch agreement protocol of package membership as a
// pure, deterministic state machine in the style of etcd's raft: inputs
// are Step (a received message), Tick (time), Observe (the gossip view),
// Suspect (the transport lost a peer) and Boundary (the training loop
// finished or failed a step, or leaves); outputs are read from Ready
// (messages to send, durable state to persist first, the boundary's
// outcome, peers to abort) and acknowledged with Advance. There are no
// goroutines, clocks, locks or I/O here: the driver does them.
//
// # Protocol
//
// An epoch is a number and a sorted member list. At each step boundary
// every member reports to the coordinator, the lowest member that gossip
// and the transport do not consider lost. If every member reported the
// same step, nothing failed, nobody leaves and nobody asked to join, the
// coordinator answers "continue" (a resent report that was answered
// already is answered again: a lost "continue" costs one resend).
// Otherwise the successor of the epoch (its base) is chosen by single-
// decree Paxos among the base's members: prepare/promise with a ballot
// (number, proposer), then accept/accepted; a value needs promises and
// acceptances from a majority of the base's members, leavers included
// (they answer, but are not members of the successor). A proposer adopts
// the value accepted under the highest ballot among the promises, so a
// value that may have been decided is never replaced: at most one
// successor per base, and its number is the base's plus one. The decided
// value is committed to the acceptors, the new members and the reporters.
// A node that learnt the decision resends it to a member of the successor
// that reports from the base, even when it is not a member itself: a
// proposer may adopt a value that leaves it out, and when every commit to
// the members is lost it is the only node that knows the value was
// decided, while its own acceptor refuses every other round for that base
// (seeds 36231 and 79569: the members waited for good).
// A leaver excluded by a decided value lingers until a member shows it
// applied it, for the same reason; the value is durable (HardState.Left),
// since a leaver that restarted and forgot it would leave at once, and
// with it the only knowledge of the decision (seeds 417509 and 614466).
//
// A first epoch (base 0) needs every candidate's promise and acceptance;
// candidates are fresh nodes (they never held an epoch), at least
// MinMembers of them. A node that held an epoch never takes part in a
// first epoch: it is admitted by a running epoch, or, when none runs, re-
// forms its held epoch's successor with a majority of that epoch's
// members. HardState (the held epoch and the acceptor state) must be
// persisted before the messages of the same Ready are sent, so a restart
// keeps the promises.
//
// # Lost durable state (refound)
//
// A member whose disk was wiped restarts as a fresh node: its promises and
// acceptances are gone, so it must not count toward a majority of its old
// epoch (a value it accepted may have been decided). When a member that
// kept its state finds no majority of its held epoch that kept theirs,
// but every member is back (the others showing as fresh, or amnesiac),
// it re-founds the successor with all of them: the round carries FlagAll
// and the member list, a fresh member named in it takes the base as held
// with HardState.Amnesiac set, and the value needs every member's promise
// and acceptance. With every member present, a member that applied
// another successor would not be waiting in the base (it would show that
// later epoch), so the value adopted cannot strand a running epoch,
// unless every acceptor of that successor lost its state and its other
// members are cut off from every gossip view: the one case this trades
// for resuming after a lost disk. An amnesiac node never proposes for its
// held epoch and refuses rounds without FlagAll. A fresh node does not
// propose a first epoch while a restarted member of an earlier epoch
// waits (it may be needed for a refound). A member that lost its state
// but is resent the commit of its old epoch by one that kept the value
// making it (HardState.Made) cannot be told from a newcomer that missed
// its admission, nor, for a first epoch, from a member that never
// accepted the value a proposer adopted; dropping that resend stalls
// those (seeds 2168 and 32098), and the same holds for the resend by a
// non-member above. So it re-applies the epoch with empty acceptor state
// and votes again, without FlagAll: the lost-disk gap in the guarantees,
// which needs its lost promises to have counted toward a successor that
// others run out of sight (TestLostDurableState, "residual").
//
// # Invariants (checked by the simulator in sim_test.go)
//
//   - At most one epoch is decided per base epoch, with acceptances from a
//     majority of the base's members (all candidates for a first epoch).
//   - Every member of a decided epoch applies the same member list, and a
//     node never applies two different epochs with the same number.
//   - A step runs only in a committed epoch and completes only if every
//     member takes part; members that did not complete it are synced from
//     one that did before the next step (Outcome.Sync).
//   - Once faults stop and a majority of the latest epoch can talk, an
//     epoch forms within a bounded number of ticks.
//
// Two first epochs can form side by side only from disjoint sets of fresh
// nodes, which MinMembers above half the nodes that may start rules out.
package agree
