// Package peers holds the peer-connection rules that transport/quic and
// transport/tcp share: the table of one connection per peer, the dial with
// backoff, the choice between two connections of one pair, the watchers of
// transport.ConnWatcher and the closing of idle connections. It is generic
// over the transports' connection type and knows nothing of their wire
// formats; each transport brings the handshake and the way its connections
// end.
//
// Invariants:
//   - At most one installed connection per peer; a newly installed one
//     replaces (and ends) the old.
//   - At most one dial per peer at a time; other Conn calls for that peer
//     wait for it.
//   - When both ends dial at once, the connection dialed by the lower node
//     ID wins: the higher ID's dial is refused with ErrDuplicate and waits
//     for the peer's connection. A connection from another incarnation of
//     the peer (a restarted process) always replaces the old one.
//   - A FailPeer verdict ends the peer's connection and the dial in
//     progress; Conn calls that waited through it fail with the verdict
//     instead of dialing again.
//   - Watchers see every installed connection exactly once: in
//     WatchConns' snapshot or when it is installed later. They run with
//     the table's lock held.
//   - Every field of a Table is guarded by its lock. Conn.Start,
//     Conn.Replaced and the watchers run with it held, so they must not
//     block or call back into the table; nothing else of a transport runs
//     under it.
package peers
