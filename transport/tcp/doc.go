// Package tcp implements transport.Endpoint over TCP with mutual TLS 1.3
// from the cluster secret (Config.Secret; derivation in internal/secret),
// standard library only. It is the lighter sibling of transport/quic: the
// kernel does segmentation, acknowledgement and retransmission, and
// crypto/tls seals 16 KiB records instead of quic-go's 1.4 KB packets,
// which costs a fraction of the CPU per byte.
//
// Design and invariants:
//   - One TCP connection (one TLS session, ALPN ringtrain-tcp/1) per peer
//     pair, reused by every operation and epoch; with Config.Lanes = k, a
//     bundle of k that acts as one (lanes.go: a data tag's frames travel
//     on lane Op mod k, so k operations in flight use k cores). Whoever needs it first
//     dials; when both dial at once the connection dialed by the lower node
//     ID wins and the other is refused (peers.ErrDuplicate). The dialer's hello
//     carries a random per-process incarnation, so a restarted peer's
//     connection replaces the stale one while a duplicate from the same
//     process is refused. Identity comes from the certificate: a foreign
//     secret fails with ErrForeignPeer, another node's certificate with
//     ErrWrongPeer, both at once and without retries.
//   - Messages of all tags are multiplexed in frames (frame.go): a begin
//     frame announces a message's size, data frames of at most maxSubFrame
//     bytes carry it, so the messages of different tags interleave, and a
//     cancel frame tells the receiver to drop a message its sender gave up
//     part way (earlier messages of the tag stay delivered). Every length
//     is bounded before anything is allocated; a bad frame closes the
//     connection with an ErrProtocol error naming the peer.
//   - Flow control is per tag, by credit: a sender may have tagWindow bytes
//     of a tag unacknowledged; the receiver returns credit as Recv consumes
//     (in creditBatch steps, everything once the tag's buffer is empty). A
//     tag nobody reads therefore holds at most tagWindow bytes of receive
//     memory and never stops the reader, so other tags flow on; total
//     receive memory is tagWindow per tag with unread data, and the
//     number of such tags is the number of operations the caller runs at
//     once.
//   - One reader goroutine per connection decodes frames. While a Recv
//     waits for a message, its payload is read straight from TLS into the
//     caller's buffer; otherwise it is staged, full sub-frames in buffers
//     the endpoint recycles once the message is read or dropped (most
//     of a ring's messages arrive before their Recv). One writer goroutine per
//     connection sends queued control frames, then one sub-frame of each
//     waiting Send in turn, up to roundBudget per round, through 256 KiB
//     socket buffers with one flush per round, so the socket sees large
//     writes and the reader is never blocked behind a write (no credit
//     deadlock).
//   - Send returns once its last byte is flushed to the socket; the caller
//     may reuse p then. A Send cancelled while the writer copies one of its
//     sub-frames waits for that sub-frame (≤ maxSubFrame), as does a Recv
//     cancelled while one lands in its buffer, so no buffer is touched after
//     its call returns. A Recv that runs out of time before its first byte
//     leaves the message to the next Recv; one that runs out mid-message,
//     or whose buffer is too small, drops it.
//   - Data messages of an epoch below SetEpoch's are refused: the receiver
//     discards them and answers with a refuse frame, so the sender's calls
//     on that tag fail with transport.ErrEpoch naming us. Control tags
//     (Op ≥ transport.ControlOpBase) are exempt.
//   - Loss: TCP_USER_TIMEOUT (Config.UserTimeout, default 10 s) and
//     keep-alive probes every second end a silent link with ErrPeerLost.
//     FailPeer closes the peer's connection at once, failing every call on
//     it and a dial in progress with ErrPeerLost and the cause; a later
//     dial in either direction connects again. Running out of time while
//     dialing is ErrUnreachable.
//   - Idle connections (Config.IdleClose, idle.go) end like Close's but
//     with an idle frame instead of a goodbye: neither end takes it for a
//     loss (calls fail with transport.ErrClosed), and the next Conn dials
//     again. KeepOpen exempts peers (a running epoch's ring neighbours).
//   - Close is graceful within Config.Linger: the writer sends what is
//     queued, a goodbye frame and close_notify; the peer, having read
//     everything before it, fails its calls with ErrPeerLost and closes,
//     and Close waits for every goroutine it started.
//   - Abort reasons from peers are stored truncated to
//     transport.MaxReasonLen; at most maxAborted failed tags are remembered.
//   - Every blocking call honours its ctx; errors are *transport.OpError.
package tcp
