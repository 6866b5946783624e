package node_test

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ringtrain/ringtrain/collective"
	"github.com/ringtrain/ringtrain/node"
)

// TestTransports: with either data-plane transport (and tcp with 3
// lanes, where the all-reduce of 600,000 elements splits into 3 parts) a
// 3-node job forms its first epoch and all-reduces exactly, and each node
// holds live connections to both of its ring neighbours.
func TestTransports(t *testing.T) {
	tests := []struct {
		name      string
		transport string
		lanes     int
	}{
		{"tcp", node.TransportTCP, 1},
		{"quic", node.TransportQUIC, 1},
		{"tcp 3 lanes", node.TransportTCP, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			nodes := startNodes(ctx, t, 3, func(_ int, c *node.Config) { c.Transport, c.Lanes = tt.transport, tt.lanes })
			errs := onEach(nodes, func(i int, n *node.Node) error {
				b, err := n.Boundary(ctx, node.Step{})
				if err != nil {
					return err
				}
				buf := make([]float32, 600000)
				for j := range buf {
					buf[j] = float32(i + 1 + j%7)
				}
				if err := b.Group.AllReduce(ctx, buf, collective.Sum); err != nil {
					return err
				}
				for j, v := range buf {
					if want := float32(6 + 3*(j%7)); v != want {
						return fmt.Errorf("element %d: sum %v, want %v", j, v, want)
					}
				}
				return nil
			})
			for i, err := range errs {
				if err != nil {
					t.Fatalf("%s: %v", nodes[i].ID(), err)
				}
			}
			for _, n := range nodes {
				got := n.Connections()
				for _, p := range []string{"n0", "n1", "n2"} {
					if p != n.ID() && !slices.Contains(got, p) {
						t.Errorf("%s: connections %v lack ring neighbour %s", n.ID(), got, p)
					}
				}
			}
		})
	}
}

// TestTransportStartErrors: an unknown transport, and a TCP port taken
// on the fixed QUIC port's number, fail Start naming the node and cause.
func TestTransportStartErrors(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	cases := []struct {
		name string
		c    node.Config
		text string
	}{
		{"unknown transport", node.Config{ID: "x", Transport: "udp", Logger: quiet()}, `node x: transport: "udp": want tcp or quic`},
		{"tcp port taken", node.Config{ID: "x", QUICListen: taken.Addr().String(), Logger: quiet()},
			"node x: start: tcp listen on the QUIC port " + taken.Addr().String()},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			n, err := node.Start(context.Background(), tc.c)
			if err == nil {
				n.Close()
				t.Fatal("started")
			}
			if !strings.Contains(err.Error(), tc.text) {
				t.Fatalf("got %v, want %q", err, tc.text)
			}
		})
	}
}
