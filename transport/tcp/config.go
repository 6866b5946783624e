package tcp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/ringtrain/ringtrain/internal/secret"
)

// Config configures an Endpoint. ID and Secret are required; zero values of
// the other fields select the defaults below. The fields mirror
// transport/quic's Config, so a node can pick either transport.
type Config struct {
	// ID is this node's ID; it is the name in its certificate.
	ID string
	// Secret is the cluster secret (at least MinSecretLen bytes). Listen
	// derives the cluster CA from it and makes this node's certificate;
	// peers are trusted only if theirs chains to the same CA.
	Secret []byte
	// ListenAddr is the TCP address to bind. Default "127.0.0.1:0".
	ListenAddr string
	// Peers are initial peer addresses (node ID → host:port); AddPeer adds
	// more at run time.
	Peers map[string]string
	// Resolve, if set, is asked for the address of a peer AddPeer has not
	// named (membership feeds it from gossip).
	Resolve func(ctx context.Context, id string) (string, error)
	// MaxMessage bounds one message's payload. Default 64 MiB.
	MaxMessage int
	// HandshakeTimeout bounds one dial attempt (TCP connect, TLS handshake
	// and the hello exchange). Default 5 s.
	HandshakeTimeout time.Duration
	// Linger bounds how long Close waits for each connection's graceful
	// end (the peer reading our goodbye). Default 2 s.
	Linger time.Duration
	// UserTimeout declares a link lost when data stays unacknowledged, or
	// keep-alive probes go unanswered, for this long (TCP_USER_TIMEOUT plus
	// TCP keep-alive every second). Default 10 s, like quic's IdleTimeout.
	UserTimeout time.Duration
	// IdleClose, if positive, closes a connection that carried no message
	// in either direction for this long and has no call in progress, data
	// buffered or credit outstanding on a data tag (Op <
	// transport.ControlOpBase), so connections opened for a passing
	// exchange (an epoch change, a state sync) do not stay open for good.
	// Calls waiting on control tags do not keep a connection open: they
	// fail with an error wrapping transport.ErrClosed (not a loss), as the
	// peer's calls do, and the next Conn dials again. Each end decides
	// alone, so a connection both ends must keep through long pauses (a
	// running epoch's ring links) is named in KeepOpen on both. Zero (the
	// default) never closes a connection for idleness. As in
	// transport/quic.
	IdleClose time.Duration
	// Lanes is the number of TCP connections (TLS sessions) per peer pair,
	// 1..16 (lanes.go): a data message of tag Op travels on lane Op mod
	// Lanes, so operations with consecutive numbers (collective.Config.Lanes
	// splits a large all-reduce into such parts) seal and open their bytes
	// on different cores. One TLS session moves about 1.4 GB/s per direction
	// on one core; a link faster than that needs ⌈link / 1.4 GB/s⌉ lanes.
	// Every node must use the same value: a peer with another is refused,
	// naming both. Default 1.
	Lanes int
	// Logger receives warnings (refused peers, protocol violations).
	// Default slog.Default().
	Logger *slog.Logger

	// cluster is what Secret derives; set by withDefaults.
	cluster *secret.Cluster
}

// MinSecretLen is the shortest cluster secret accepted.
const MinSecretLen = secret.MinSecretLen

// ErrForeignPeer is wrapped by dial and handshake errors when the peer runs
// with another cluster secret.
var ErrForeignPeer = secret.ErrForeignPeer

// ErrWrongPeer is wrapped when a peer's certificate is valid for the
// cluster but names another node than the one dialed.
var ErrWrongPeer = secret.ErrWrongPeer

// ALPN is the application protocol this transport negotiates; it differs
// from transport/quic's so neither can be mistaken for the other.
const ALPN = "ringtrain-tcp/1"

// DefaultMaxMessage is the default bound on one message.
const DefaultMaxMessage = 64 << 20

const (
	defaultUserTimeout = 10 * time.Second
	keepAlivePeriod    = time.Second
)

func (c Config) withDefaults() (Config, error) {
	if c.ID == "" {
		return c, errors.New("tcp: Config.ID is empty")
	}
	if len(c.ID) > maxIDLen {
		return c, fmt.Errorf("tcp: node ID of %d bytes, limit %d", len(c.ID), maxIDLen)
	}
	if len(c.Secret) < MinSecretLen {
		return c, fmt.Errorf("tcp: node %s: Config.Secret has %d bytes, want at least %d", c.ID, len(c.Secret), MinSecretLen)
	}
	cl, err := secret.New(c.Secret)
	if err != nil {
		return c, fmt.Errorf("tcp: node %s: cluster secret: %w", c.ID, err)
	}
	c.cluster = cl
	if c.ListenAddr == "" {
		c.ListenAddr = "127.0.0.1:0"
	}
	if c.MaxMessage <= 0 {
		c.MaxMessage = DefaultMaxMessage
	}
	if c.MaxMessage > maxMessageLimit {
		return c, fmt.Errorf("tcp: node %s: MaxMessage %d over the frame limit %d", c.ID, c.MaxMessage, maxMessageLimit)
	}
	if c.HandshakeTimeout <= 0 {
		c.HandshakeTimeout = 5 * time.Second
	}
	if c.Linger <= 0 {
		c.Linger = 2 * time.Second
	}
	if c.UserTimeout <= 0 {
		c.UserTimeout = defaultUserTimeout
	}
	if c.Lanes == 0 {
		c.Lanes = 1
	}
	if c.Lanes < 1 || c.Lanes > maxLanes {
		return c, fmt.Errorf("tcp: node %s: Config.Lanes %d out of range 1..%d", c.ID, c.Lanes, maxLanes)
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c, nil
}
