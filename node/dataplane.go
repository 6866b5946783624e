package node

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"syscall"

	"github.com/ringtrain/ringtrain/transport"
	"github.com/ringtrain/ringtrain/transport/quic"
	"github.com/ringtrain/ringtrain/transport/tcp"
)

// dataPlane is what a node needs of the endpoint its collectives run on:
// quic.Endpoint (the control plane's own) and tcp.Endpoint both are one.
type dataPlane interface {
	transport.Endpoint
	transport.ConnWatcher
	AddPeer(id, addr string)
	SetEpoch(epoch uint64)
	// KeepOpen exempts the running epoch's ring neighbours from IdleClose.
	KeepOpen(ids ...string)
}

// portRetries bounds how often Start picks a new free UDP port when the
// TCP port of the same number is taken (only when the port was free to
// choose).
const portRetries = 8

// listenPlanes opens the node's QUIC endpoint and, for Transport "tcp",
// a TCP endpoint on the same IP and port number: peers learn one address
// from gossip and dial it over UDP for control messages and over TCP for
// gradients, so an operator opens one port number for both.
func listenPlanes(cfg Config, sec []byte, log *slog.Logger) (*quic.Endpoint, dataPlane, error) {
	qc := quic.Config{ID: cfg.ID, Secret: sec, ListenAddr: cfg.QUICListen, Logger: log.With("component", "quic"),
		KeepAlive: quicKeepAlive, IdleTimeout: quicIdleTimeout, IdleClose: quicIdleClose}
	_, port, err := net.SplitHostPort(cfg.QUICListen)
	if err != nil {
		return nil, nil, fmt.Errorf("quic listen %q: %w", cfg.QUICListen, err)
	}
	free := port == "0"
	for try := 0; ; try++ {
		ep, err := quic.Listen(qc)
		if err != nil {
			return nil, nil, err
		}
		if cfg.Transport == TransportQUIC {
			return ep, ep, nil
		}
		addr := ep.Addr()
		data, err := tcp.Listen(tcp.Config{ID: cfg.ID, Secret: sec, ListenAddr: addr, Logger: log.With("component", "tcp"),
			UserTimeout: quicIdleTimeout, IdleClose: quicIdleClose, Lanes: cfg.Lanes})
		if err == nil {
			return ep, data, nil
		}
		ep.Close()
		if !free || !errors.Is(err, syscall.EADDRINUSE) || try+1 == portRetries {
			return nil, nil, fmt.Errorf("tcp listen on the QUIC port %s: %w", addr, err)
		}
	}
}

// connectedUnion merges the peers two endpoints hold connections to.
func connectedUnion(a, b transport.ConnWatcher) []string {
	out := a.Connected()
	if b != a {
		out = append(out, b.Connected()...)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// plane names the data-plane settings every node of a job must share
// (membership.Meta.Plane): the transport, its connections per peer and the
// chunk size that cuts each all-reduce into frames. Gossip refuses a peer
// whose settings differ, naming both, at join; without it every ring
// connection between them would be refused (lanes) or every operation
// would fail (chunk), and the epochs would be re-formed without end.
func plane(c *Config) string {
	return fmt.Sprintf("%s lanes=%d chunk=%d", c.Transport, c.Lanes, c.ChunkBytes)
}
