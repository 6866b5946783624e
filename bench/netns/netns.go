// Package netns builds an emulated cluster network for benchmarks: one Linux
// network namespace per peer, each joined by a veth pair to a bridge that
// lives in a namespace of its own, with every link optionally rate-limited by
// a tc token-bucket filter (tbf) in both directions.
//
// Invariants:
//   - Everything it creates lives inside namespaces it created: the root
//     namespace's devices, addresses and routes are never touched.
//   - Namespace names start with "rtar-<pid>-", pid being the creating
//     process, so a later run can tell a crashed run's leftovers (pid no
//     longer alive) from a concurrent run's namespaces and remove only the
//     former (CleanupStale).
//   - Addresses come from 10.211.0.0/24 and exist only inside these
//     namespaces.
//   - Close removes everything Setup made, and Setup removes what it made
//     when it fails halfway.
package netns

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
)

// NamePrefix starts every namespace name this package creates.
const NamePrefix = "rtar-"

// MaxPeers bounds the number of peers one topology may hold (the /24 subnet
// and device-name lengths are sized for it).
const MaxPeers = 200

// ErrNotRoot is returned when the process cannot create namespaces.
var ErrNotRoot = errors.New("network namespaces need root (CAP_NET_ADMIN, CAP_SYS_ADMIN): run the benchmark as root, or use --links loopback / --transport mem")

// Config describes the network to build.
type Config struct {
	// Peers is the number of peer namespaces (1..MaxPeers).
	Peers int
	// Rate is a tc rate such as "40mbit" applied to each direction of each
	// peer's link; empty leaves links unshaped.
	Rate string
	// NoBurst also caps each link's instantaneous rate just above Rate (tbf
	// peakrate, PeakRate): a link that was idle cannot send its bucket's
	// worth at wire speed. Emulations that alternate compute with
	// communication need it, or every all-reduce starts with a free burst.
	NoBurst bool
}

// PeakRate is the tbf peakrate used with Config.NoBurst: 1% above the rate
// (tc requires peakrate > rate), in bits per second.
func PeakRate(bitsPerSec float64) int64 {
	return int64(bitsPerSec*1.01) + 1
}

// Peer is one peer's place in the topology.
type Peer struct {
	NS   string     // namespace name
	Dev  string     // the peer's interface inside NS
	Addr netip.Addr // the peer's address on Dev
}

// Topology is a built network. Close removes it.
type Topology struct {
	Prefix string // namespace name prefix of this run, e.g. "rtar-1234-"
	Bridge string // namespace holding the bridge
	Peers  []Peer
	Rate   string
}

// CheckRoot reports ErrNotRoot unless the process runs as root and the ip
// and tc tools are installed.
func CheckRoot() error {
	if os.Geteuid() != 0 {
		return ErrNotRoot
	}
	for _, tool := range []string{"ip", "tc"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("netns: %s not found (apt-get install -y iproute2): %w", tool, err)
		}
	}
	return nil
}

// PeerAddr is the address of peer i (0-based) inside the topology.
func PeerAddr(i int) netip.Addr {
	return netip.AddrFrom4([4]byte{10, 211, 0, byte(10 + i)})
}

// Burst is the tbf bucket size used for a rate in bits per second: about
// 4 ms of traffic, but never less than 16 full-size frames so that a
// segmentation-offloaded packet still fits.
func Burst(bitsPerSec float64) int {
	b := int(bitsPerSec / 8 / 250)
	if m := 16 * 1514; b < m {
		b = m
	}
	return b
}

// ParseRate converts a tc rate ("40mbit", "1gbit", "500kbit", "100000bit")
// to bits per second.
func ParseRate(s string) (float64, error) {
	units := []struct {
		suffix string
		mult   float64
	}{{"gbit", 1e9}, {"mbit", 1e6}, {"kbit", 1e3}, {"bit", 1}}
	ls := strings.ToLower(strings.TrimSpace(s))
	for _, u := range units {
		if num, ok := strings.CutSuffix(ls, u.suffix); ok {
			v, err := strconv.ParseFloat(num, 64)
			if err != nil || v <= 0 {
				return 0, fmt.Errorf("netns: bad rate %q", s)
			}
			return v * u.mult, nil
		}
	}
	return 0, fmt.Errorf("netns: bad rate %q (want e.g. 40mbit)", s)
}

// Setup builds the topology. On error everything already made is removed.
func Setup(ctx context.Context, cfg Config) (top *Topology, err error) {
	if err := CheckRoot(); err != nil {
		return nil, err
	}
	if cfg.Peers < 1 || cfg.Peers > MaxPeers {
		return nil, fmt.Errorf("netns: %d peers out of range 1..%d", cfg.Peers, MaxPeers)
	}
	var bps float64
	if cfg.Rate != "" {
		if bps, err = ParseRate(cfg.Rate); err != nil {
			return nil, err
		}
	}
	prefix := fmt.Sprintf("%s%d-", NamePrefix, os.Getpid())
	t := &Topology{Prefix: prefix, Bridge: prefix + "br", Rate: cfg.Rate}
	defer func() {
		if err != nil {
			_ = t.Close()
		}
	}()
	if err := t.addNS(ctx, t.Bridge); err != nil {
		return nil, err
	}
	if err := t.run(ctx, "ip", "-n", t.Bridge, "link", "add", "br0", "type", "bridge"); err != nil {
		return nil, err
	}
	if err := t.run(ctx, "ip", "-n", t.Bridge, "link", "set", "br0", "up"); err != nil {
		return nil, err
	}
	for i := 0; i < cfg.Peers; i++ {
		p := Peer{NS: prefix + strconv.Itoa(i), Dev: "eth0", Addr: PeerAddr(i)}
		port := "p" + strconv.Itoa(i)
		if err := t.addNS(ctx, p.NS); err != nil {
			return nil, err
		}
		t.Peers = append(t.Peers, p)
		steps := [][]string{
			{"ip", "link", "add", "name", p.Dev, "netns", p.NS, "type", "veth", "peer", "name", port, "netns", t.Bridge},
			{"ip", "-n", p.NS, "addr", "add", p.Addr.String() + "/24", "dev", p.Dev},
			{"ip", "-n", p.NS, "link", "set", p.Dev, "up"},
			{"ip", "-n", t.Bridge, "link", "set", port, "master", "br0"},
			{"ip", "-n", t.Bridge, "link", "set", port, "up"},
		}
		if bps > 0 {
			tbf := func(ns, dev string) []string {
				args := []string{"tc", "-n", ns, "qdisc", "add", "dev", dev, "root", "tbf",
					"rate", cfg.Rate, "burst", strconv.Itoa(Burst(bps)), "latency", "100ms"}
				if cfg.NoBurst {
					// The peak bucket holds one frame; larger (GSO)
					// packets are segmented by tbf.
					args = append(args, "peakrate", strconv.FormatInt(PeakRate(bps), 10)+"bit", "mtu", "1514")
				}
				return args
			}
			// Both directions: the peer's egress, and the bridge port's
			// egress, which is the peer's ingress, as on a full-duplex link.
			steps = append(steps, tbf(p.NS, p.Dev), tbf(t.Bridge, port))
		}
		for _, s := range steps {
			if err := t.run(ctx, s[0], s[1:]...); err != nil {
				return nil, err
			}
		}
	}
	return t, nil
}

func (t *Topology) addNS(ctx context.Context, name string) error {
	if err := t.run(ctx, "ip", "netns", "add", name); err != nil {
		return err
	}
	return t.run(ctx, "ip", "-n", name, "link", "set", "lo", "up")
}

func (t *Topology) run(ctx context.Context, name string, args ...string) error {
	return run(ctx, name, args...)
}

func run(ctx context.Context, name string, args ...string) error {
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("netns: %s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(out.String()))
	}
	return nil
}

// Command returns a command that runs name with args inside peer i's
// namespace.
func (t *Topology) Command(ctx context.Context, i int, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", t.Peers[i].NS, name}, args...)...)
}

// Close deletes every namespace of the topology (and with them their veths,
// bridge and qdiscs). Processes still inside a namespace keep it alive, so
// callers stop their peers first.
func (t *Topology) Close() error {
	var errs []error
	// A fresh context: cleanup must run even when the caller's was cancelled.
	ctx := context.Background()
	for _, p := range t.Peers {
		if err := run(ctx, "ip", "netns", "del", p.NS); err != nil {
			errs = append(errs, err)
		}
	}
	t.Peers = nil
	if t.Bridge != "" {
		if err := run(ctx, "ip", "netns", "del", t.Bridge); err != nil && exists(t.Bridge) {
			errs = append(errs, err)
		}
		t.Bridge = ""
	}
	return errors.Join(errs...)
}

func exists(ns string) bool {
	_, err := os.Stat("/run/netns/" + ns)
	return err == nil
}

// List returns the names of the namespaces whose name starts with prefix.
func List(ctx context.Context, prefix string) ([]string, error) {
	out, err := exec.CommandContext(ctx, "ip", "netns", "list").Output()
	if err != nil {
		return nil, fmt.Errorf("netns: ip netns list: %w", err)
	}
	var names []string
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) > 0 && strings.HasPrefix(f[0], prefix) {
			names = append(names, f[0])
		}
	}
	return names, nil
}

// CleanupStale removes namespaces left by runs that died without cleaning
// up: those named NamePrefix+"<pid>-…" whose pid is no longer alive. A
// concurrent run's namespaces (live pid) are left alone.
func CleanupStale(ctx context.Context) ([]string, error) {
	names, err := List(ctx, NamePrefix)
	if err != nil {
		return nil, err
	}
	var removed []string
	var errs []error
	for _, n := range names {
		pidStr, _, ok := strings.Cut(strings.TrimPrefix(n, NamePrefix), "-")
		pid, perr := strconv.Atoi(pidStr)
		if !ok || perr != nil || pid <= 0 || alive(pid) {
			continue
		}
		if err := run(ctx, "ip", "netns", "del", n); err != nil {
			errs = append(errs, err)
			continue
		}
		removed = append(removed, n)
	}
	return removed, errors.Join(errs...)
}

func alive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}
