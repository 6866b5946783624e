package cluster

import (
	"context"
	"fmt"

	"github.com/ringtrain/ringtrain/transport"
	"github.com/ringtrain/ringtrain/transport/tcp"
)

// NewTCPEndpoint makes this worker's transport/tcp endpoint (mutual TLS 1.3
// over TCP from the run's cluster secret), listening on addrs[id] and
// knowing every other node's address, with lanes connections per peer
// (tcp.Config.Lanes; 0 is its default).
func NewTCPEndpoint(ctx context.Context, id string, addrs map[string]string, secretHex string, lanes int) (transport.Endpoint, error) {
	raw, peers, err := endpointArgs(id, addrs, secretHex)
	if err != nil {
		return nil, err
	}
	ep, err := tcp.Listen(tcp.Config{ID: id, Secret: raw, ListenAddr: addrs[id], Peers: peers, Lanes: lanes})
	if err != nil {
		return nil, err
	}
	// Collectives and the parameter server run in epoch 1.
	ep.SetEpoch(1)
	return ep, nil
}

// NewEndpoint makes the endpoint of the named transport: "quic" (also the
// empty name, for specs that predate the choice) or "tcp" (with lanes
// connections per peer).
func NewEndpoint(ctx context.Context, transportName, id string, addrs map[string]string, secretHex string, lanes int) (transport.Endpoint, error) {
	switch transportName {
	case "", "quic":
		if lanes > 1 {
			return nil, fmt.Errorf("%d lanes need the tcp transport", lanes)
		}
		return NewQUICEndpoint(ctx, id, addrs, secretHex)
	case "tcp":
		return NewTCPEndpoint(ctx, id, addrs, secretHex, lanes)
	}
	return nil, fmt.Errorf("unknown transport %q (want quic or tcp)", transportName)
}
