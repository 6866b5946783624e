package tcp

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ringtrain/ringtrain/internal/secret"
	"github.com/ringtrain/ringtrain/transport"
)

// TestWrongSecretRefusedBothWays: nodes with different secrets cannot
// connect in either direction, and both dialers say why at once (no
// retries until the deadline).
func TestWrongSecretRefusedBothWays(t *testing.T) {
	a := newCluster(t, []byte("the secret of cluster A"), []string{"a"}, nil)[0]
	b := newCluster(t, []byte("the secret of cluster B"), []string{"b"}, nil)[0]
	a.AddPeer("b", b.Addr().String())
	b.AddPeer("a", a.Addr().String())
	tests := []struct {
		name     string
		from, to *Endpoint
	}{
		{"a dials b", a, b},
		{"b dials a", b, a},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			start := time.Now()
			_, err := tt.from.Conn(ctxT(t, 20*time.Second), tt.to.ID())
			if !errors.Is(err, ErrForeignPeer) {
				t.Fatalf("got %v, want ErrForeignPeer", err)
			}
			var oe *transport.OpError
			if !errors.As(err, &oe) || oe.Peer != tt.to.ID() {
				t.Fatalf("error %v does not name peer %s", err, tt.to.ID())
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Fatalf("refusal took %v; a wrong secret must not be retried", d)
			}
		})
	}
}

// TestWrongNodeRefused: an address that answers with another node's
// (valid) certificate is refused.
func TestWrongNodeRefused(t *testing.T) {
	eps := newCluster(t, testSecret(), []string{"a", "b", "c"}, nil)
	eps[0].AddPeer("b", eps[2].Addr().String()) // "b" now points at c
	_, err := eps[0].Conn(ctxT(t, 10*time.Second), "b")
	if !errors.Is(err, ErrWrongPeer) {
		t.Fatalf("got %v, want ErrWrongPeer", err)
	}
	checkPeer(t, err, "b")
}

func checkPeer(t *testing.T, err error, peer string) {
	t.Helper()
	var oe *transport.OpError
	if !errors.As(err, &oe) || oe.Peer != peer {
		t.Fatalf("error %v is not an OpError naming %s", err, peer)
	}
}

// rawPeer connects to e as cluster member id over TLS and completes the
// hello, so a test can write arbitrary frames.
func rawPeer(t *testing.T, e *Endpoint, id string) *tls.Conn {
	t.Helper()
	cl, err := secret.New(testSecret())
	if err != nil {
		t.Fatal(err)
	}
	node, err := cl.Node(id)
	if err != nil {
		t.Fatal(err)
	}
	tc := node.ClientConfig(e.ID())
	tc.NextProtos = []string{ALPN}
	d := tls.Dialer{NetDialer: &net.Dialer{Timeout: 5 * time.Second}, Config: tc}
	nc, err := d.DialContext(ctxT(t, 5*time.Second), "tcp", e.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c := nc.(*tls.Conn)
	t.Cleanup(func() { c.Close() })
	if err := writeFrame(c, kindHello, helloMsg{version: protocolVersion, incarnation: 1, lanes: 1, to: e.ID()}.appendTo(nil)); err != nil {
		t.Fatal(err)
	}
	p, err := readFrame(c, kindAck)
	if err != nil {
		t.Fatal(err)
	}
	if ack, err := decodeAck(p); err != nil || !ack.accepted {
		t.Fatalf("ack %+v, %v", ack, err)
	}
	return c
}

// TestBadFrameClosesConnection: frames that break the protocol end the
// connection, and the calls waiting on it fail with ErrProtocol naming
// the peer.
func TestBadFrameClosesConnection(t *testing.T) {
	tag := transport.Tag{Epoch: 1, Op: 1}
	frame := func(hs ...header) []byte {
		var b []byte
		for _, h := range hs {
			b = appendHeader(b, h)
		}
		return b
	}
	tests := []struct {
		name  string
		bytes []byte
	}{
		{"unknown kind", frame(header{kind: 99})},
		{"data outside a message", frame(header{kind: kindData, tag: tag, length: 1})},
		{"data beyond the message", append(frame(header{kind: kindBegin, tag: tag, length: 1}, header{kind: kindData, tag: tag, length: 2}), 1, 2)},
		{"begin inside a message", frame(header{kind: kindBegin, tag: tag, length: 5}, header{kind: kindBegin, tag: tag, length: 5})},
		{"credit never owed", frame(header{kind: kindCredit, tag: tag, length: 10})},
		{"oversized message", frame(header{kind: kindBegin, tag: tag, length: DefaultMaxMessage + 1})},
		{"hello after the handshake", frame(header{kind: kindHello, length: 0})},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newCluster(t, testSecret(), []string{"victim"}, nil)[0]
			raw := rawPeer(t, e, "mallory")
			c, err := e.Conn(ctxT(t, 5*time.Second), "mallory")
			if err != nil {
				t.Fatal(err)
			}
			errc := make(chan error, 1)
			go func() {
				_, err := c.Recv(ctxT(t, 10*time.Second), transport.Tag{Epoch: 1, Op: 2}, make([]byte, 8))
				errc <- err
			}()
			if _, err := raw.Write(tt.bytes); err != nil {
				t.Fatal(err)
			}
			err = <-errc
			if !errors.Is(err, transport.ErrProtocol) || !strings.Contains(err.Error(), "mallory") {
				t.Fatalf("got %v, want ErrProtocol naming mallory", err)
			}
		})
	}
}

// TestListenAddressInUse: the bind error stays visible to errors.Is.
func TestListenAddressInUse(t *testing.T) {
	e := newCluster(t, testSecret(), []string{"a"}, nil)[0]
	_, err := Listen(Config{ID: "b", Secret: testSecret(), ListenAddr: e.Addr().String()})
	if !errors.Is(err, syscall.EADDRINUSE) {
		t.Fatalf("got %v, want EADDRINUSE", err)
	}
}

var _ = context.Background
