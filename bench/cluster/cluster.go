// Package cluster is the process driver the benchmarks share: where peer
// processes run (all on loopback, or each in its own network namespace
// behind a shaped link, bench/netns), how they are started and synchronised
// (the READY/GO/result/EXIT protocol over their stdin and stdout), and the
// one hidden "worker" subcommand every peer process runs: it makes the peer's
// QUIC endpoint, joins the protocol and runs the job its spec names
// (bench/allreduce's measured rounds, bench/scaling's emulated steps).
//
// Invariants: a peer process never outlives its driver (its context ends
// with the driver's stdin and at its spec's deadline); no peer dials before
// every peer of the run listens (GO comes only after every READY); no peer
// closes its connections before the driver has every result (EXIT); every
// process a run started is stopped and reaped before RunProcs returns; the
// namespaces a Cluster made are removed by Close.
package cluster

import (
	"context"
	"fmt"
	"net"
	"os/exec"
	"strconv"

	"github.com/ringtrain/ringtrain/bench/netns"
)

// Cluster is where peer processes run: either all on loopback in this
// namespace, or each slot in its own network namespace behind a shaped link.
type Cluster struct {
	links string          // "loopback" or a tc rate
	top   *netns.Topology // nil on loopback
	ports map[[2]int]int  // loopback: (slot, service) -> port
}

// New prepares slots places for peers: links is "loopback" or a tc rate
// (namespaces behind tbf-shaped links; needs root).
func New(ctx context.Context, links string, slots int) (*Cluster, error) {
	return NewWithConfig(ctx, netns.Config{Peers: slots, Rate: links})
}

// NewWithConfig is New with all of netns's options; cfg.Rate is
// "loopback" for unshaped peers on 127.0.0.1.
func NewWithConfig(ctx context.Context, cfg netns.Config) (*Cluster, error) {
	links := cfg.Rate
	c := &Cluster{links: links, ports: map[[2]int]int{}}
	if links == "loopback" {
		return c, nil
	}
	if _, err := netns.CleanupStale(ctx); err != nil {
		return nil, err
	}
	top, err := netns.Setup(ctx, cfg)
	if err != nil {
		return nil, err
	}
	c.top = top
	return c, nil
}

// Close removes the namespaces, if any.
func (c *Cluster) Close() error {
	if c.top == nil {
		return nil
	}
	return c.top.Close()
}

// Host is the address of a slot.
func (c *Cluster) Host(slot int) string {
	if c.top == nil {
		return "127.0.0.1"
	}
	return c.top.Peers[slot].Addr.String()
}

// Iface is the network interface peers use (for MPI's TCP transport).
func (c *Cluster) Iface() string {
	if c.top == nil {
		return "lo"
	}
	return c.top.Peers[0].Dev
}

// Addr is host:port for service number service on a slot. In namespaces
// every slot has its own address and the port is fixed; on loopback each
// (slot, service) gets a port that was free (TCP and UDP) when asked.
func (c *Cluster) Addr(slot, service int) (string, error) {
	if c.top != nil {
		return net.JoinHostPort(c.Host(slot), strconv.Itoa(7100+service)), nil
	}
	k := [2]int{slot, service}
	if _, ok := c.ports[k]; !ok {
		p, err := c.freePort()
		if err != nil {
			return "", err
		}
		c.ports[k] = p
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(c.ports[k])), nil
}

// freePort finds a loopback port free for both TCP and UDP and not yet
// handed out by this cluster.
func (c *Cluster) freePort() (int, error) {
	used := map[int]bool{}
	for _, p := range c.ports {
		used[p] = true
	}
	for try := 0; try < 100; try++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, fmt.Errorf("find a free loopback port: %w", err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		u, err := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", port))
		l.Close()
		if err == nil {
			u.Close()
			if !used[port] {
				return port, nil
			}
		}
	}
	return 0, fmt.Errorf("no free loopback port found")
}

// Command runs name with args on a slot.
func (c *Cluster) Command(ctx context.Context, slot int, name string, args ...string) *exec.Cmd {
	if c.top == nil {
		return exec.CommandContext(ctx, name, args...)
	}
	return c.top.Command(ctx, slot, name, args...)
}

// Namespace is the network namespace of a slot ("" on loopback).
func (c *Cluster) Namespace(slot int) string {
	if c.top == nil {
		return ""
	}
	return c.top.Peers[slot].NS
}

// Shaped reports whether the slots are namespaces behind shaped links.
func (c *Cluster) Shaped() bool { return c.top != nil }
