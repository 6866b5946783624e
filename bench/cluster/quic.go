package cluster

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"

	"github.com/ringtrain/ringtrain/transport"
	"github.com/ringtrain/ringtrain/transport/quic"
)

// NewSecret makes the throwaway cluster secret one benchmark run shares with
// its peer processes (hex, for the worker spec).
func NewSecret() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return hex.EncodeToString(b), nil
}

// NewQUICEndpoint makes this worker's transport/quic endpoint, listening on
// addrs[id] and knowing every other node's address, with mutual TLS from the
// run's cluster secret.
func NewQUICEndpoint(ctx context.Context, id string, addrs map[string]string, secretHex string) (transport.Endpoint, error) {
	raw, peers, err := endpointArgs(id, addrs, secretHex)
	if err != nil {
		return nil, err
	}
	ep, err := quic.Listen(quic.Config{ID: id, Secret: raw, ListenAddr: addrs[id], Peers: peers})
	if err != nil {
		return nil, err
	}
	// Collectives and the parameter server run in epoch 1.
	ep.SetEpoch(1)
	return ep, nil
}

// endpointArgs decodes the run's cluster secret and names every peer's
// address but this worker's, for either transport's endpoint.
func endpointArgs(id string, addrs map[string]string, secretHex string) ([]byte, map[string]string, error) {
	raw, err := hex.DecodeString(secretHex)
	if err != nil {
		return nil, nil, fmt.Errorf("cluster secret: %w", err)
	}
	peers := map[string]string{}
	for p, a := range addrs {
		if p != id {
			peers[p] = a
		}
	}
	return raw, peers, nil
}
