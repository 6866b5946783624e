package node

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
)

// InsecureSecret is the cluster secret of a node given none, on loopback or
// with Config.Insecure: traffic is still encrypted, but anyone who can
// reach the ports can join.
const InsecureSecret = "ringtrain-insecure-default-secret"

// ErrNoSecret is returned by Start for a node without a secret whose
// addresses are not all loopback, unless Config.Insecure is set.
var ErrNoSecret = errors.New("no cluster secret and the addresses are not all loopback: " +
	"refusing to run unauthenticated across hosts; give a secret, or set insecure to accept that anyone who can reach the ports can join")

// secretFor applies the secret policy to a Config with defaults: the
// given secret; else, on loopback or with Insecure, InsecureSecret
// (insecure reports it, for the caller's warning); else ErrNoSecret.
func secretFor(c *Config) (sec []byte, insecure bool, err error) {
	switch {
	case len(c.Secret) > 0:
		return c.Secret, false, nil
	case c.Insecure || loopbackOnly(c):
		return []byte(InsecureSecret), true, nil
	}
	return nil, false, fmt.Errorf("node %s: %w", c.ID, ErrNoSecret)
}

// loopbackOnly reports whether every address this node uses or contacts is
// on the loopback interface, where running without a secret is harmless.
func loopbackOnly(c *Config) bool {
	addrs := append([]string{c.Listen, c.Advertise, c.QUICListen, c.QUICAdvertise}, c.Seeds...)
	for _, a := range addrs {
		if a == "" {
			continue
		}
		host, _, err := net.SplitHostPort(strings.TrimSpace(a))
		if err != nil {
			return false
		}
		if host == "localhost" {
			continue
		}
		ip := net.ParseIP(host)
		if ip == nil || !ip.IsLoopback() {
			return false
		}
	}
	return true
}

func splitList(s string) []string {
	var out []string
	for _, x := range strings.Split(s, ",") {
		if x = strings.TrimSpace(x); x != "" {
			out = append(out, x)
		}
	}
	return out
}

func splitHostPort(a string) (string, int, error) {
	h, p, err := net.SplitHostPort(a)
	if err != nil {
		return "", 0, err
	}
	port, err := strconv.Atoi(p)
	if err != nil || port < 0 || port > 65535 {
		return "", 0, fmt.Errorf("bad port in %q", a)
	}
	return h, port, nil
}

// resolveHost returns host as an IP address, looking a name up (a Slurm or
// Kubernetes host name) and preferring a non-loopback IPv4 address.
func resolveHost(host string) (string, error) {
	if net.ParseIP(host) != nil {
		return host, nil
	}
	ips, err := net.LookupIP(host)
	if err != nil {
		return "", err
	}
	if len(ips) == 0 {
		return "", fmt.Errorf("%s has no address", host)
	}
	for _, ip := range ips {
		if ip.To4() != nil && !ip.IsLoopback() {
			return ip.String(), nil
		}
	}
	return ips[0].String(), nil
}

// advertised returns the QUIC address peers should dial: the explicit one;
// else the gossip advertise host with the bound port; else the bound one
// with an unspecified host replaced by this host's first non-loopback
// address.
func advertised(explicit, gossipAdvertise, bound string) (string, error) {
	if explicit != "" {
		return explicit, nil
	}
	h, p, err := net.SplitHostPort(bound)
	if err != nil {
		return "", err
	}
	if gossipAdvertise != "" {
		gh, _, err := net.SplitHostPort(gossipAdvertise)
		if err != nil {
			return "", err
		}
		return net.JoinHostPort(gh, p), nil
	}
	if ip := net.ParseIP(h); ip != nil && !ip.IsUnspecified() {
		return bound, nil
	}
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return "", err
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && !n.IP.IsLoopback() && n.IP.To4() != nil {
			return net.JoinHostPort(n.IP.String(), p), nil
		}
	}
	return net.JoinHostPort("127.0.0.1", p), nil
}
