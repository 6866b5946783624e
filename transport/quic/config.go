package quic

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	quicgo "github.com/quic-go/quic-go"

	"github.com/ringtrain/ringtrain/internal/secret"
	"github.com/ringtrain/ringtrain/internal/wire"
)

// Config configures an Endpoint. ID and Secret are required; zero values of
// the other fields select the defaults below. Every field is of a public
// type, so a program outside this module can configure an Endpoint.
type Config struct {
	// ID is this node's ID; it is the name in its certificate.
	ID string
	// Secret is the cluster secret (at least MinSecretLen bytes). Listen
	// derives the cluster CA from it and makes this node's certificate;
	// peers are trusted only if theirs chains to the same CA.
	Secret []byte
	// ListenAddr is the UDP address to bind. Default "127.0.0.1:0".
	ListenAddr string
	// Peers are initial peer addresses (node ID → host:port); AddPeer adds
	// more at run time.
	Peers map[string]string
	// Resolve, if set, is asked for the address of a peer AddPeer has not
	// named (membership feeds it from gossip).
	Resolve func(ctx context.Context, id string) (string, error)
	// MaxMessage bounds one message's payload. Default 64 MiB.
	MaxMessage int
	// KeepAlive is the keep-alive period that keeps idle ring links open
	// during compute. Default defaultKeepAlive.
	KeepAlive time.Duration
	// IdleTimeout declares a silent peer lost. Default defaultIdleTimeout.
	IdleTimeout time.Duration
	// HandshakeTimeout bounds one dial attempt and the Hello exchange.
	// Default 5 s.
	HandshakeTimeout time.Duration
	// IdleClose, if positive, closes a connection that carried no message
	// in either direction for this long and has no call in progress on a
	// data tag (Op < transport.ControlOpBase), so connections opened for a
	// passing exchange (an epoch change, a state sync) do not stay open
	// for good. Calls waiting on control tags do not keep a connection
	// open: they fail with an error wrapping transport.ErrClosed (not a
	// loss), as the peer's calls do, and the next Conn dials again.
	// Each end decides alone, so a connection both ends must keep through
	// long pauses (a running epoch's ring links) is named in KeepOpen on
	// both. Zero (the default) never closes a connection for idleness.
	IdleClose time.Duration
	// Linger bounds how long Close waits for peers to consume the messages
	// already sent to them (QUIC drops unacknowledged data on close).
	// Default 2 s.
	Linger time.Duration
	// Logger receives warnings (refused peers, protocol violations, small
	// UDP buffers). Default slog.Default().
	Logger *slog.Logger

	// cluster is what Secret derives; set by withDefaults.
	cluster *secret.Cluster
}

// MinSecretLen is the shortest cluster secret accepted: shorter ones are
// refused rather than stretched.
const MinSecretLen = secret.MinSecretLen

// ErrForeignPeer is wrapped by dial and handshake errors when the peer runs
// with another cluster secret (its certificate is not signed by our CA, or
// it refused ours).
var ErrForeignPeer = secret.ErrForeignPeer

// ErrWrongPeer is wrapped when a peer's certificate is valid for the
// cluster but names another node than the one dialed.
var ErrWrongPeer = secret.ErrWrongPeer

// Flow-control windows sized for bulk transfer: a stream's first chunk
// (collective.DefaultChunkBytes = 256 KiB) fits its initial window, and the
// connection window lets a ring pipeline several chunks per link.
const (
	initialStreamWindow = 1 << 20
	maxStreamWindow     = 16 << 20
	initialConnWindow   = 16 << 20
	maxConnWindow       = 256 << 20
	// maxIncomingUni bounds parked, unread messages per connection; a
	// sender beyond it waits (flow control) instead of growing our memory.
	maxIncomingUni = 4096
)

// Liveness defaults. Keep-alives every second keep a link idle during
// compute open. The idle timeout (no packet from the peer for that long loses
// it) stays 10 s: with 3 s, 16 endpoints in one process under -race on the
// loaded 2-core machine lost live links (TestCollectiveConformance). Fast
// detection (≤ 3 s) is gossip's job, fed in through FailPeer; a deployment
// that wants the transport itself that fast sets IdleTimeout (3 s notices a
// SIGKILLed peer on an idle link after 3.04 s: TestKilledPeerNoticed; 4
// processes holding 12 idle links for 90 s at load average ~20 lost none).
const (
	defaultKeepAlive   = time.Second
	defaultIdleTimeout = 10 * time.Second
)

func (c Config) withDefaults() (Config, error) {
	if c.ID == "" {
		return c, errors.New("quic: Config.ID is empty")
	}
	if len(c.Secret) < MinSecretLen {
		return c, fmt.Errorf("quic: node %s: Config.Secret has %d bytes, want at least %d", c.ID, len(c.Secret), MinSecretLen)
	}
	cl, err := secret.New(c.Secret)
	if err != nil {
		return c, fmt.Errorf("quic: node %s: cluster secret: %w", c.ID, err)
	}
	c.cluster = cl
	if c.ListenAddr == "" {
		c.ListenAddr = "127.0.0.1:0"
	}
	if c.MaxMessage <= 0 {
		c.MaxMessage = wire.DefaultMaxPayload
	}
	if c.KeepAlive <= 0 {
		c.KeepAlive = defaultKeepAlive
	}
	if c.IdleTimeout <= 0 {
		c.IdleTimeout = defaultIdleTimeout
	}
	if c.HandshakeTimeout <= 0 {
		c.HandshakeTimeout = 5 * time.Second
	}
	if c.Linger <= 0 {
		c.Linger = 2 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c, nil
}

func (c Config) quicConfig() *quicgo.Config {
	return &quicgo.Config{
		HandshakeIdleTimeout:           c.HandshakeTimeout,
		MaxIdleTimeout:                 c.IdleTimeout,
		KeepAlivePeriod:                c.KeepAlive,
		InitialStreamReceiveWindow:     initialStreamWindow,
		MaxStreamReceiveWindow:         maxStreamWindow,
		InitialConnectionReceiveWindow: initialConnWindow,
		MaxConnectionReceiveWindow:     maxConnWindow,
		MaxIncomingStreams:             1, // the control stream
		MaxIncomingUniStreams:          maxIncomingUni,
		// RESET_STREAM_AT: a Send cancelled mid-message resets its stream
		// without losing the earlier messages on it (see send).
		EnableStreamResetPartialDelivery: true,
	}
}
