package secret

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"time"
)

// certLifetime bounds a node certificate; node certificates are made at
// process start, so this only has to outlast one process.
const certLifetime = 10 * 365 * 24 * time.Hour

// Node is one node's TLS identity: a fresh key and a certificate for its node
// ID signed by the cluster CA. It is immutable and safe for concurrent use.
type Node struct {
	id      string
	cluster *Cluster
	cert    tls.Certificate
}

// Node makes a fresh key and a certificate naming nodeID, signed by the
// cluster CA.
func (c *Cluster) Node(nodeID string) (*Node, error) {
	if nodeID == "" {
		return nil, errors.New("secret: empty node ID")
	}
	pub, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("node %s: generate key: %w", nodeID, err)
	}
	sn, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("node %s: serial: %w", nodeID, err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: sn,
		Subject:      pkix.Name{CommonName: nodeID},
		NotBefore:    now.Add(-time.Hour), // tolerate clock skew between nodes
		NotAfter:     now.Add(certLifetime),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, c.caCert, pub, c.caKey)
	if err != nil {
		return nil, fmt.Errorf("node %s: sign certificate: %w", nodeID, err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("node %s: parse certificate: %w", nodeID, err)
	}
	return &Node{id: nodeID, cluster: c, cert: tls.Certificate{
		Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf,
	}}, nil
}

// ID is the node ID the certificate names.
func (n *Node) ID() string { return n.id }

// ServerConfig is the TLS configuration for accepting connections: it
// requires a client certificate from this cluster (any node ID; read it with
// PeerID after the handshake).
func (n *Node) ServerConfig() *tls.Config {
	cfg := n.base()
	cfg.ClientAuth = tls.RequireAnyClientCert
	cfg.VerifyPeerCertificate = func(raw [][]byte, _ [][]*x509.Certificate) error {
		_, err := n.cluster.verify(raw, "")
		return err
	}
	return cfg
}

// ClientConfig is the TLS configuration for dialing the node expectPeer: the
// server must present a certificate from this cluster naming expectPeer.
func (n *Node) ClientConfig(expectPeer string) *tls.Config {
	cfg := n.base()
	// Node IDs are not host names, so the standard name check is replaced by
	// the chain and node-ID check in VerifyPeerCertificate; it is not skipped.
	cfg.InsecureSkipVerify = true
	cfg.ServerName = "ringtrain"
	cfg.VerifyPeerCertificate = func(raw [][]byte, _ [][]*x509.Certificate) error {
		_, err := n.cluster.verify(raw, expectPeer)
		return err
	}
	return cfg
}

func (n *Node) base() *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		MaxVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{n.cert},
		NextProtos:   []string{ALPN},
	}
}

// PeerID returns the node ID of a handshake's verified peer certificate.
func (c *Cluster) PeerID(cs tls.ConnectionState) (string, error) {
	raw := make([][]byte, len(cs.PeerCertificates))
	for i, cert := range cs.PeerCertificates {
		raw[i] = cert.Raw
	}
	return c.verify(raw, "")
}

// verify checks that raw[0] chains to the cluster CA and, when expect is not
// empty, names expect. It returns the certificate's node ID.
func (c *Cluster) verify(raw [][]byte, expect string) (string, error) {
	if len(raw) == 0 {
		return "", fmt.Errorf("%w: no certificate", ErrForeignPeer)
	}
	leaf, err := x509.ParseCertificate(raw[0])
	if err != nil {
		return "", fmt.Errorf("%w: %v", ErrForeignPeer, err)
	}
	_, err = leaf.Verify(x509.VerifyOptions{
		Roots:     c.pool,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	})
	if err != nil {
		return "", fmt.Errorf("%w (certificate for %q: %v)", ErrForeignPeer, leaf.Subject.CommonName, err)
	}
	id := leaf.Subject.CommonName
	if expect != "" && id != expect {
		return "", fmt.Errorf("%w: dialed %q, certificate names %q", ErrWrongPeer, expect, id)
	}
	return id, nil
}
