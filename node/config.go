package node

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ringtrain/ringtrain/collective"
	"github.com/ringtrain/ringtrain/membership"
	"github.com/ringtrain/ringtrain/transport/quic"
)

// Config configures a Node. The zero Config is usable: it starts a node on
// 127.0.0.1 that begins a new cluster, with the well-known insecure secret.
type Config struct {
	// ID is this node's unique name: its gossip name, the name in its
	// certificate, and its place in the ring (members are ordered by ID).
	// Default: hostname-pid-<random>.
	ID string
	// Seeds are gossip addresses (host:port) of peers to join through.
	// Empty: this node starts a new cluster.
	Seeds []string
	// Listen is the gossip (TCP and UDP) address to bind. Default
	// "127.0.0.1:0".
	Listen string
	// Advertise is the gossip address peers use to reach this node; a
	// host name is resolved (gossip advertises IP addresses only).
	// Default: the bound address.
	Advertise string
	// QUICListen is the UDP address of the data plane. Default: Listen's
	// host on a free port.
	QUICListen string
	// QUICAdvertise is the QUIC address peers dial. Default: Advertise's
	// host with the bound port; else the bound address, an unspecified
	// host replaced by this host's first non-loopback IPv4 address.
	QUICAdvertise string
	// Transport carries the epoch's collectives (the gradients): "tcp"
	// (TLS 1.3 over TCP, listening on the QUIC address's port number, on
	// TCP) or "quic" (the QUIC endpoint that carries the control plane).
	// Both use mutual TLS from the cluster secret. Default
	// DefaultTransport.
	Transport string
	// Lanes is the number of TCP connections per peer pair on the tcp
	// transport (tcp.Config.Lanes) and the number of parts a large
	// all-reduce is split into (collective.Config.Lanes), so one ring step
	// uses that many cores: about one per 1.4 GB/s of link. 1..16, the
	// same on every node (a joiner with other lanes is refused); above 1
	// it needs Transport "tcp". Default 1.
	Lanes int

	// Secret is the cluster secret (at least 16 bytes): it derives the
	// gossip key and the cluster CA. Without one, a node whose addresses
	// are all loopback uses a well-known insecure secret (with a
	// warning); across hosts it is refused unless Insecure is set.
	Secret []byte
	// Insecure accepts running across hosts without a secret: traffic is
	// still encrypted, but anyone who can reach the ports can join.
	Insecure bool

	// MinPeers is the size of the first epoch: nobody trains before this
	// many nodes are present. Default 1.
	MinPeers int
	// ChunkBytes is the pipelining unit of the epoch's collectives.
	// Default collective.DefaultChunkBytes.
	ChunkBytes int
	// OpTimeout is the deadline of one collective operation whose ctx has
	// none. Default collective.DefaultTimeout.
	OpTimeout time.Duration
	// Fingerprint names the job (model and hyper-parameters): peers with
	// another fingerprint are refused by gossip.
	Fingerprint string

	// Snapshot and Restore are both set or both nil. Set, Boundary moves
	// state itself: on the sync source it sends Snapshot's blob, on a
	// target it calls Restore before returning.
	Snapshot func() ([]byte, error)
	Restore  func(state []byte) error

	// Held is the membership epoch this node last applied before it
	// restarted, as Node.Held returned it into the checkpoint (zero for
	// a fresh node): a node that held an epoch never forms a first epoch
	// without a majority of that epoch's members, so a restarted node
	// cut off from the others waits instead of training alone.
	Held membership.Epoch

	// StateFile, if set, keeps the membership agreement's durable state
	// (its held epoch, promises and acceptances) across restarts: read at
	// Start when it exists (it then takes precedence over Held), and
	// rewritten atomically, before the node acts on it, every time it
	// changes (epoch changes and agreement rounds, never per step). A
	// node that kept it votes in its epoch's successor as before; one
	// that lost it counts only when every member is back. A file that
	// cannot be decoded stops Start: starting without it would forget
	// promises silently.
	StateFile string

	// Logger receives the node's logs. Default slog.Default().
	Logger *slog.Logger
}

// withDefaults fills in the defaults documented on Config.
func (c Config) withDefaults() (Config, error) {
	if c.ID == "" {
		h, err := os.Hostname()
		if err != nil || h == "" {
			h = "node"
		}
		var r [3]byte
		if _, err := rand.Read(r[:]); err != nil {
			return c, fmt.Errorf("node: default ID: %w", err)
		}
		// The random part keeps nodes started in one process apart.
		c.ID = fmt.Sprintf("%s-%d-%s", h, os.Getpid(), hex.EncodeToString(r[:]))
	}
	if c.Listen == "" {
		c.Listen = "127.0.0.1:0"
	}
	if c.QUICListen == "" {
		h, _, err := net.SplitHostPort(c.Listen)
		if err != nil {
			return c, fmt.Errorf("node %s: listen %q: %w", c.ID, c.Listen, err)
		}
		c.QUICListen = net.JoinHostPort(h, "0")
	}
	if c.MinPeers <= 0 {
		c.MinPeers = 1
	}
	if c.Transport == "" {
		c.Transport = DefaultTransport
	}
	if err := checkTransport(c.Transport); err != nil {
		return c, fmt.Errorf("node %s: transport: %w", c.ID, err)
	}
	if c.Lanes == 0 {
		c.Lanes = 1
	}
	if err := checkLanes(c.Lanes, c.Transport); err != nil {
		return c, fmt.Errorf("node %s: lanes: %w", c.ID, err)
	}
	if c.ChunkBytes <= 0 {
		c.ChunkBytes = collective.DefaultChunkBytes
	}
	if c.OpTimeout <= 0 {
		c.OpTimeout = collective.DefaultTimeout
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if (c.Snapshot == nil) != (c.Restore == nil) {
		return c, fmt.Errorf("node %s: set both Snapshot and Restore, or neither", c.ID)
	}
	if len(c.Secret) > 0 && len(c.Secret) < quic.MinSecretLen {
		return c, fmt.Errorf("node %s: cluster secret has %d bytes, want at least %d", c.ID, len(c.Secret), quic.MinSecretLen)
	}
	return c, nil
}

// Key is one key of ConfigFromMap: the name of the trainer's flag (and of
// its RINGTRAIN_* environment twin) that sets the same field.
type Key struct {
	Name  string
	Usage string
	// Bool marks a switch: on a command line, the name alone means true.
	Bool bool
	set  func(c *Config, v string) error
}

// Keys lists the keys ConfigFromMap understands, in the order the
// trainer's help shows them.
func Keys() []Key {
	return []Key{
		{Name: "seeds", Usage: "comma-separated gossip addresses (host:port) of peers to join; empty: start a new cluster",
			set: func(c *Config, v string) error { c.Seeds = splitList(v); return nil }},
		{Name: "listen", Usage: "gossip listen address (host:port)",
			set: func(c *Config, v string) error { c.Listen = v; return checkHostPort(v) }},
		{Name: "advertise", Usage: "gossip address other peers use to reach this node (default: the listen address, or this host's address)",
			set: func(c *Config, v string) error { c.Advertise = v; return checkHostPort(v) }},
		{Name: "quic-listen", Usage: "QUIC (UDP) listen address for gradients",
			set: func(c *Config, v string) error { c.QUICListen = v; return checkHostPort(v) }},
		{Name: "quic-advertise", Usage: "QUIC address other peers dial (default: derived like --advertise)",
			set: func(c *Config, v string) error { c.QUICAdvertise = v; return checkHostPort(v) }},
		{Name: "transport", Usage: "transport of the gradients: tcp (TLS over TCP on the QUIC port's number) or quic",
			set: func(c *Config, v string) error { c.Transport = v; return checkTransport(v) }},
		{Name: "lanes", Usage: "TCP connections per peer and parts of a large all-reduce, so a ring step uses that many cores (about one per 1.4 GB/s of link; the same on every node)",
			set: func(c *Config, v string) error {
				n, err := strconv.Atoi(v)
				if err == nil && (n < 1 || n > maxLanes) {
					err = fmt.Errorf("must be in 1..%d", maxLanes)
				}
				c.Lanes = n
				return err
			}},
		{Name: "node-id", Usage: "unique node ID (default: made from the host name and process ID)",
			set: func(c *Config, v string) error { c.ID = v; return nil }},
		{Name: "secret", Usage: "cluster secret: derives the gossip key and the TLS CA (prefer --secret-file or the environment)",
			set: func(c *Config, v string) error { c.Secret = []byte(v); return checkSecret(c.Secret) }},
		{Name: "secret-file", Usage: "file holding the cluster secret",
			set: func(c *Config, v string) error {
				b, err := os.ReadFile(v)
				if err != nil {
					return err
				}
				s := strings.TrimSpace(string(b))
				if s == "" {
					return errors.New("the file is empty")
				}
				c.Secret = []byte(s)
				return checkSecret(c.Secret)
			}},
		{Name: "insecure", Bool: true, Usage: "allow running across hosts without a cluster secret (anyone who can reach the ports can join)",
			set: func(c *Config, v string) (err error) { c.Insecure, err = strconv.ParseBool(v); return err }},
		{Name: "min-peers", Usage: "peers to wait for before the first step",
			set: func(c *Config, v string) error {
				n, err := strconv.Atoi(v)
				if err == nil && n < 1 {
					err = errors.New("must be at least 1")
				}
				c.MinPeers = n
				return err
			}},
		{Name: "chunk-bytes", Usage: "all-reduce pipelining chunk size in bytes",
			set: func(c *Config, v string) error {
				n, err := strconv.Atoi(v)
				if err == nil && n < 1 {
					err = errors.New("must be positive")
				}
				c.ChunkBytes = n
				return err
			}},
		{Name: "op-timeout", Usage: "deadline of one collective operation or agreement round",
			set: func(c *Config, v string) error {
				d, err := time.ParseDuration(v)
				if err == nil && d <= 0 {
					err = errors.New("must be positive")
				}
				c.OpTimeout = d
				return err
			}},
		{Name: "fingerprint", Usage: "job identity: peers with another one are refused",
			set: func(c *Config, v string) error { c.Fingerprint = v; return nil }},
		{Name: "state-file", Usage: "file that keeps the membership agreement's state across restarts (read at start if present; the trainer defaults it beside its checkpoint)",
			set: func(c *Config, v string) error { c.StateFile = v; return nil }},
	}
}

// ErrUnknownKey is wrapped by the KeyError of a key ConfigFromMap does not
// know.
var ErrUnknownKey = errors.New("unknown key")

// KeyError is one refused key of ConfigFromMap; the error ConfigFromMap
// returns joins one per refused key (find them with errors.As).
type KeyError struct {
	Key, Value string
	Err        error
}

func (e *KeyError) Error() string {
	if e.Key == "secret" { // never echo a secret
		return fmt.Sprintf("%s: %v", e.Key, e.Err)
	}
	return fmt.Sprintf("%s %q: %v", e.Key, e.Value, e.Err)
}

func (e *KeyError) Unwrap() error { return e.Err }

// ConfigFromMap builds a Config from key/value strings named like the
// trainer's flags (Keys lists them): the C ABI's JSON and the trainer's
// flags and environment are read by this one function. An empty value
// leaves its field at the default; values are trimmed of surrounding
// space, except the secret. secret-file is read here. Snapshot,
// Restore and Logger are left for the caller.
func ConfigFromMap(kv map[string]string) (Config, error) {
	keys := Keys()
	var c Config
	var errs []error
	for _, k := range slices.Sorted(maps.Keys(kv)) {
		v := kv[k]
		if k != "secret" { // a secret is taken as given, like the trainer's flag
			v = strings.TrimSpace(v)
		}
		i := slices.IndexFunc(keys, func(x Key) bool { return x.Name == k })
		if i < 0 {
			errs = append(errs, &KeyError{Key: k, Value: v, Err: fmt.Errorf("%w (known: %s)", ErrUnknownKey, keyNames(keys))})
			continue
		}
		if v == "" {
			continue
		}
		if err := keys[i].set(&c, v); err != nil {
			errs = append(errs, &KeyError{Key: k, Value: v, Err: err})
		}
	}
	if kv["secret"] != "" && strings.TrimSpace(kv["secret-file"]) != "" {
		errs = append(errs, &KeyError{Key: "secret-file", Value: kv["secret-file"], Err: errors.New("give the secret by secret or secret-file, not both")})
	}
	return c, errors.Join(errs...)
}

func checkSecret(s []byte) error {
	if len(s) < quic.MinSecretLen {
		return fmt.Errorf("%d bytes, want at least %d", len(s), quic.MinSecretLen)
	}
	return nil
}

func checkHostPort(a string) error {
	_, _, err := splitHostPort(a)
	return err
}

func keyNames(keys []Key) string {
	names := make([]string, len(keys))
	for i, k := range keys {
		names[i] = k.Name
	}
	return strings.Join(names, ", ")
}

// maxLanes bounds Config.Lanes (tcp's and collective's bound).
const maxLanes = 16

// checkLanes: lanes in 1..maxLanes, and above 1 only on the tcp transport
// (quic-go's connection is one core whatever the collective does).
func checkLanes(lanes int, transport string) error {
	switch {
	case lanes < 1 || lanes > maxLanes:
		return fmt.Errorf("%d lanes, want 1..%d", lanes, maxLanes)
	case lanes > 1 && transport != TransportTCP:
		return fmt.Errorf("%d lanes need the tcp transport, not %s", lanes, transport)
	}
	return nil
}

// Transports a node's collectives can run on (Config.Transport).
const (
	TransportTCP  = "tcp"
	TransportQUIC = "quic"
	// DefaultTransport is TCP: on loopback it moves gradients at several
	// times QUIC's rate for the same CPU (quic-go seals and sends every
	// 1.4 KB packet itself; the kernel segments TCP), with the same
	// mutual TLS.
	DefaultTransport = TransportTCP
)

func checkTransport(v string) error {
	switch v {
	case TransportTCP, TransportQUIC:
		return nil
	}
	return fmt.Errorf("%q: want %s or %s", v, TransportTCP, TransportQUIC)
}
