// Package quic implements transport.Endpoint over QUIC (quic-go) with mutual
// TLS 1.3 from the cluster secret (Config.Secret; derivation in internal/secret).
//
// Design and invariants:
//   - One quic.Transport, hence one UDP socket, per Endpoint.
//   - At most one live connection per peer pair, reused by every operation
//     and epoch. Whoever needs a connection first dials; when both dial at
//     once, the connection dialed by the lower node ID wins and the other is
//     refused (ERROR_CODE_DUPLICATE). A Hello carries a random per-process
//     incarnation, so a restarted peer's connection replaces the stale one
//     while a duplicate from the same process is refused.
//   - The dialer opens one bidirectional control stream (Hello, HelloAck,
//     Abort, Error, membership messages as wire.Control frames).
//   - The messages of one tag toward a peer travel in order on one
//     unidirectional QUIC stream, each a wire.DataHeader frame (epoch, op,
//     length) followed by exactly length raw payload bytes: no stream
//     set-up per message, and Send returns with the message's last
//     writeBehind bytes still queued, so the next message follows on the
//     wire without a gap. The stream closes (FIN, between messages) once
//     the tag has been idle for idleStreamClose, or to keep at most
//     maxOpenStreams open; a later Send opens a newer one. Under the tag's
//     send lock a tag has at most one open stream, and QUIC hands streams
//     to the receiver in stream-ID order, which reads a tag's streams one
//     after the other: per-tag FIFO order needs no sequence numbers, and no
//     per-tag state outlives its streams. Each incoming stream has a reader
//     goroutine that reads its headers; Recv reads the payload straight
//     from the stream into the caller's buffer (no intermediate copy).
//   - A Send cancelled mid-message resets its stream with RESET_STREAM_AT at
//     the message's start, so the earlier messages on it are still
//     delivered. A Recv that runs out of time before the first payload byte
//     leaves the message to the next Recv; one that runs out of time
//     mid-message, or whose buffer is too small, drops that message (the
//     rest is discarded from the stream) and later messages of the tag are
//     delivered.
//   - Every length from the wire is bounded before allocation; bad frames
//     close the connection with a protocol error naming the peer.
//   - Messages from an epoch below the one set with SetEpoch are refused:
//     the stream is cancelled and the sender is told with an Error frame, so
//     its later calls on that tag fail with transport.ErrEpoch naming us.
//   - Close is graceful within Config.Linger: it ends its data streams,
//     announces how many it opened (wire.Goodbye) and waits for the peer to
//     consume them to their end, because QUIC drops unacknowledged data when
//     a connection closes.
//   - FailPeer (the failure detector's verdict) closes the peer's connection
//     with an application error, ending every call on it and any dial in
//     progress with transport.ErrPeerLost; a dial that only ran out of time
//     is transport.ErrUnreachable. Without traffic, keep-alives every 1 s
//     keep a link open; Config.IdleTimeout (default 10 s) without a packet
//     from the peer loses it.
//   - Abort reasons and refusal messages from peers are stored truncated to
//     transport.MaxReasonLen.
//   - Every blocking call honours its ctx; errors are *transport.OpError.
//
// Cores per link: quic-go packs, encrypts and decrypts a connection's
// packets on that connection's goroutine, and reads a socket on one
// goroutine, so one neighbour link uses about one core per end however many
// streams it has. Using more cores per link takes several connections (each
// with its own socket) per neighbour; BenchmarkRawQUICLanes measures how
// that scales on a host.
package quic
