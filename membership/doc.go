// Package membership finds peers by gossip (hashicorp/memberlist) and makes
// them agree on numbered epochs of membership: epoch e is a number and an
// ordered member list, and the ring of every collective in e follows that
// order.
//
// Layers:
//   - gossip: memberlist joined through seeds, encrypted with a 32-byte key,
//     carrying compact node metadata (ID, QUIC address, state, protocol
//     version, model fingerprint, epoch). Incompatible peers are refused by
//     the alive and merge delegates, so they never enter the roster.
//   - agreement: at every step boundary each member reports to the
//     coordinator of its epoch (its lowest live member). The coordinator
//     answers "continue", or proposes epoch e' > e (survivors, minus leavers,
//     plus admitted newcomers), collects an acknowledgement from every member
//     of e', and commits it. Control messages travel over transport.Conn with
//     tags whose Op is at or above transport.ControlOpBase.
//   - state sync: after a commit, one member that completed the latest step
//     streams an opaque state blob, in chunks, to members that are behind.
//
// Invariants:
//   - An epoch number is committed with at most one member list: a node
//     acknowledges at most one proposal per number (until that proposal is
//     withdrawn), and a commit needs the acknowledgement of every member.
//   - An epoch commits only with a majority of the previous epoch's members
//     reporting, so a partition's minority waits instead of diverging.
//   - Boundary returns a changed epoch only after every member of it has
//     acknowledged it and, for members that were behind, after their state
//     was restored, so no collective of the new epoch runs on disagreement.
//
// The package never imports collective: callers build a collective group
// from the Epoch that Boundary returns.
package membership
