// Package node is ringtrain's public library face: it starts one member of
// a data-parallel job from a seed list and a cluster secret, and at every
// step boundary hands back the epoch's collective.Group (rank, size,
// members) and what the node must do for state sync. It wires together
// what a program would otherwise assemble itself: the QUIC endpoint
// (transport/quic), gossip and epoch agreement (membership) and the
// collective group of each epoch (collective). The trainer, the C ABI and
// any Go program build on it alike; every type in its API is public, so a
// program in another module can use it.
//
//	n, err := node.Start(ctx, node.Config{Seeds: seeds, Secret: secret, MinPeers: 4})
//	defer n.Close()
//	b, err := n.Boundary(ctx, node.Step{})          // before the first step
//	err = b.Group.AllReduce(ctx, grads, collective.Avg)
//	b, err = n.Boundary(ctx, node.Step{Done: 1})    // after each step
//
// State sync: with Config.Snapshot and Restore set, Boundary moves the
// state of the most advanced member to those behind itself. With neither
// (deferred mode, for the C ABI and bindings that hold the state outside
// Go), Boundary only names the transfer (Boundary.Sync) and the loop runs
// SendState on the source and RecvState on each target before the epoch's
// first collective.
//
// ConfigFromMap reads a Config from strings named like the trainer's
// flags, so the trainer, its RINGTRAIN_* environment and the C ABI share
// names, parsing and validation.
//
// Invariants:
//   - Secret policy: a node without a secret runs only if all its
//     addresses (listen, advertise, seeds) are loopback, or Insecure is
//     set; it then uses InsecureSecret and logs a warning. Otherwise Start
//     fails with ErrNoSecret. A peer with another secret can neither join
//     the gossip nor open a QUIC connection.
//   - Every member of an epoch gets a Group over the same ordered member
//     list; a new Group is made only when the epoch changes, and before it
//     is returned the endpoint's epoch floor is raised to the epoch, so
//     messages of aborted operations in older epochs are refused.
//   - The endpoint learns every peer's QUIC address from gossip.
//   - Peers whose data-plane settings differ (transport, lanes, chunk
//     size: membership.Meta.Plane) are refused by gossip at join, like
//     another Fingerprint, so the joiner's Start fails naming both.
//   - A ring that cannot be connected is reported as a failed step and
//     the next epoch formed; repeated failures back off (50 ms doubling
//     to 2 s), so a peer that keeps refusing does not spin epochs.
//   - Close stops everything Start started (gossip, its goroutines, the
//     endpoint) and waits for it; nothing outlives the Node.
//   - Errors name the node, the epoch and the operation.
package node
