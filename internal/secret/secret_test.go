package secret

import (
	"bytes"
	"crypto/tls"
	"errors"
	"net"
	"strings"
	"testing"
	"time"
)

func mustCluster(t *testing.T, s string) *Cluster {
	t.Helper()
	c, err := New([]byte(s))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestDerivationIsDeterministicAndSeparated(t *testing.T) {
	a1 := mustCluster(t, "correct horse battery staple")
	a2 := mustCluster(t, "correct horse battery staple")
	b := mustCluster(t, "correct horse battery staplf")
	if !bytes.Equal(a1.GossipKey(), a2.GossipKey()) || len(a1.GossipKey()) != GossipKeyLen {
		t.Fatalf("gossip key not deterministic or wrong length")
	}
	if !bytes.Equal(a1.CACertificate(), a2.CACertificate()) {
		t.Fatalf("CA certificate not deterministic")
	}
	if bytes.Equal(a1.GossipKey(), b.GossipKey()) || bytes.Equal(a1.CACertificate(), b.CACertificate()) {
		t.Fatalf("different secrets derived the same material")
	}
	if bytes.Contains(a1.CACertificate(), a1.GossipKey()) {
		t.Fatalf("gossip key appears in the CA certificate")
	}
	k := a1.GossipKey()
	k[0] ^= 0xff
	if bytes.Equal(k, a1.GossipKey()) {
		t.Fatalf("GossipKey returned internal storage")
	}
}

func TestShortSecretRefused(t *testing.T) {
	if _, err := New([]byte("short")); !errors.Is(err, ErrShortSecret) {
		t.Fatalf("New(short) = %v, want ErrShortSecret", err)
	}
}

func TestEphemeralClustersDiffer(t *testing.T) {
	a, sa, err := Ephemeral()
	if err != nil {
		t.Fatal(err)
	}
	b, sb, err := Ephemeral()
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(sa, sb) || bytes.Equal(a.GossipKey(), b.GossipKey()) {
		t.Fatal("two ephemeral secrets are equal")
	}
}

// handshake runs a TLS handshake between a client dialing expect and a
// server over loopback TCP and returns both sides' errors.
func handshake(t *testing.T, client, server *Node, expect string) (cerr, serr error, sstate tls.ConnectionState) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	deadline := time.Now().Add(10 * time.Second)
	type result struct {
		err error
		st  tls.ConnectionState
	}
	done := make(chan result, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			done <- result{err: err}
			return
		}
		defer c.Close()
		c.SetDeadline(deadline)
		sv := tls.Server(c, server.ServerConfig())
		err = sv.Handshake()
		done <- result{err, sv.ConnectionState()}
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(deadline)
	cl := tls.Client(c, client.ClientConfig(expect))
	cerr = cl.Handshake()
	if cerr != nil {
		c.Close()
	}
	r := <-done
	return cerr, r.err, r.st
}

func TestHandshake(t *testing.T) {
	good := mustCluster(t, "cluster secret number one")
	bad := mustCluster(t, "cluster secret number two")
	node := func(c *Cluster, id string) *Node {
		n, err := c.Node(id)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	tests := []struct {
		name         string
		client       *Node
		server       *Node
		expect       string
		wantClient   error // nil: handshake must succeed on the client
		wantServerOK bool
	}{
		{"same secret", node(good, "a"), node(good, "b"), "b", nil, true},
		{"client has wrong secret", node(bad, "a"), node(good, "b"), "b", ErrForeignPeer, false},
		{"server has wrong secret", node(good, "a"), node(bad, "b"), "b", ErrForeignPeer, false},
		{"server is another node", node(good, "a"), node(good, "c"), "b", ErrWrongPeer, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cerr, serr, st := handshake(t, tt.client, tt.server, tt.expect)
			if tt.wantClient == nil {
				if cerr != nil || serr != nil {
					t.Fatalf("handshake failed: client %v, server %v", cerr, serr)
				}
				id, err := good.PeerID(st)
				if err != nil || id != tt.client.ID() {
					t.Fatalf("server PeerID = %q, %v; want %q", id, err, tt.client.ID())
				}
				if st.NegotiatedProtocol != ALPN || st.Version != tls.VersionTLS13 {
					t.Fatalf("negotiated %q version %x", st.NegotiatedProtocol, st.Version)
				}
				return
			}
			if !errors.Is(cerr, tt.wantClient) && !strings.Contains(cerr.Error(), "wrong cluster secret") {
				t.Fatalf("client error = %v, want %v", cerr, tt.wantClient)
			}
			if serr == nil {
				t.Fatalf("server accepted a peer the client refused")
			}
		})
	}
}

func TestServerRefusesForeignClientPlainly(t *testing.T) {
	good := mustCluster(t, "cluster secret number one")
	bad := mustCluster(t, "cluster secret number two")
	srv, _ := good.Node("b")
	cli, _ := bad.Node("a")
	// The foreign client trusts everything, so the server is the one that
	// must detect the wrong secret and say so.
	c1, c2 := net.Pipe()
	defer c1.Close()
	defer c2.Close()
	cc := cli.ClientConfig("b")
	cc.VerifyPeerCertificate = nil
	sv := tls.Server(c2, srv.ServerConfig())
	go func() { tls.Client(c1, cc).Handshake(); c1.Close() }()
	c2.SetDeadline(time.Now().Add(10 * time.Second))
	err := sv.Handshake()
	if err == nil || !strings.Contains(err.Error(), "wrong cluster secret") {
		t.Fatalf("server handshake error = %v, want a wrong-secret message", err)
	}
}
