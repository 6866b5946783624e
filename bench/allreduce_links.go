package main

import (
	"context"
	"fmt"
	"net"
	"os/exec"
	"strconv"

	"github.com/ringtrain/ringtrain/bench/netns"
)

// cluster is where peer processes run: either all on loopback in this
// namespace, or each slot in its own network namespace behind a shaped link.
type cluster struct {
	links string          // "loopback" or a tc rate
	top   *netns.Topology // nil on loopback
	ports map[[2]int]int  // loopback: (slot, service) -> port
}

// newCluster prepares slots places for peers.
func newCluster(ctx context.Context, links string, slots int) (*cluster, error) {
	return newClusterOpts(ctx, netns.Config{Peers: slots, Rate: links})
}

// newClusterOpts is newCluster with all of netns's options; cfg.Rate is
// "loopback" for unshaped peers on 127.0.0.1.
func newClusterOpts(ctx context.Context, cfg netns.Config) (*cluster, error) {
	links := cfg.Rate
	c := &cluster{links: links, ports: map[[2]int]int{}}
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
func (c *cluster) Close() error {
	if c.top == nil {
		return nil
	}
	return c.top.Close()
}

// host is the address of a slot.
func (c *cluster) host(slot int) string {
	if c.top == nil {
		return "127.0.0.1"
	}
	return c.top.Peers[slot].Addr.String()
}

// iface is the network interface peers use (for MPI's TCP transport).
func (c *cluster) iface() string {
	if c.top == nil {
		return "lo"
	}
	return c.top.Peers[0].Dev
}

// addr is host:port for service number service on a slot. In namespaces
// every slot has its own address and the port is fixed; on loopback each
// (slot, service) gets a port that was free (TCP and UDP) when asked.
func (c *cluster) addr(slot, service int) (string, error) {
	if c.top != nil {
		return net.JoinHostPort(c.host(slot), strconv.Itoa(7100+service)), nil
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
func (c *cluster) freePort() (int, error) {
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

// command runs name with args on a slot.
func (c *cluster) command(ctx context.Context, slot int, name string, args ...string) *exec.Cmd {
	if c.top == nil {
		return exec.CommandContext(ctx, name, args...)
	}
	return c.top.Command(ctx, slot, name, args...)
}
