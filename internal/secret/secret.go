// Package secret turns one cluster secret into everything ringtrain needs to
// keep a job private: the memberlist gossip key and a cluster certificate
// authority from which every node makes its own TLS certificate.
//
// Invariants:
//   - Everything is derived with HKDF-SHA256 from the secret, with a distinct
//     info label per purpose, so knowing the gossip key reveals nothing about
//     the CA key and vice versa.
//   - The CA key and certificate are deterministic functions of the secret:
//     every node holding the secret derives the same CA without talking to
//     anyone. Node keys are fresh per process and never leave it.
//   - A peer is trusted only if its certificate chains to the CA and names
//     the node ID the caller expected; TLS 1.3 with mutual authentication and
//     ALPN "ringtrain/1" is the only configuration handed out.
package secret

import (
	"crypto/ed25519"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"time"
)

// MinSecretLen is the shortest secret accepted. Shorter secrets are refused
// rather than stretched: HKDF cannot add entropy that is not there.
const MinSecretLen = 16

// GossipKeyLen is the length of the memberlist key (AES-256-GCM).
const GossipKeyLen = 32

// ALPN is the application protocol negotiated on every connection.
const ALPN = "ringtrain/1"

// HKDF info labels; changing one changes every derived value for that purpose.
const (
	labelGossip = "ringtrain gossip key v1"
	labelCAKey  = "ringtrain cluster CA key v1"
	labelCASN   = "ringtrain cluster CA serial v1"
)

// ErrForeignPeer is wrapped by handshake errors when the peer's certificate
// was not issued by this cluster's CA, which in practice means the peer runs
// with another cluster secret.
var ErrForeignPeer = errors.New("peer presented a certificate not signed by this cluster's secret (wrong cluster secret?)")

// ErrWrongPeer is wrapped when the peer's certificate is valid for the
// cluster but names another node than the one dialed.
var ErrWrongPeer = errors.New("peer certificate names another node than the one dialed")

// ErrShortSecret is returned by New for secrets shorter than MinSecretLen.
var ErrShortSecret = fmt.Errorf("cluster secret shorter than %d bytes", MinSecretLen)

// Cluster holds what one secret derives. It is immutable and safe for
// concurrent use.
type Cluster struct {
	gossipKey []byte
	caKey     ed25519.PrivateKey
	caCert    *x509.Certificate
	pool      *x509.CertPool
}

// New derives the gossip key and the cluster CA from secret.
func New(secret []byte) (*Cluster, error) {
	if len(secret) < MinSecretLen {
		return nil, ErrShortSecret
	}
	gossip, err := hkdf.Key(sha256.New, secret, nil, labelGossip, GossipKeyLen)
	if err != nil {
		return nil, fmt.Errorf("derive gossip key: %w", err)
	}
	seed, err := hkdf.Key(sha256.New, secret, nil, labelCAKey, ed25519.SeedSize)
	if err != nil {
		return nil, fmt.Errorf("derive CA key: %w", err)
	}
	sn, err := hkdf.Key(sha256.New, secret, nil, labelCASN, 16)
	if err != nil {
		return nil, fmt.Errorf("derive CA serial: %w", err)
	}
	caKey := ed25519.NewKeyFromSeed(seed)
	// Fixed dates keep the CA certificate a pure function of the secret.
	tmpl := &x509.Certificate{
		SerialNumber:          new(big.Int).SetBytes(sn),
		Subject:               pkix.Name{CommonName: "ringtrain cluster CA"},
		NotBefore:             time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC),
		NotAfter:              time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(nil, tmpl, tmpl, caKey.Public(), caKey)
	if err != nil {
		return nil, fmt.Errorf("create CA certificate: %w", err)
	}
	caCert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parse CA certificate: %w", err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(caCert)
	return &Cluster{gossipKey: gossip, caKey: caKey, caCert: caCert, pool: pool}, nil
}

// Ephemeral makes a cluster from a fresh random secret, for --local mode
// where every node runs in this process or is started by it.
func Ephemeral() (*Cluster, []byte, error) {
	s := make([]byte, 32)
	if _, err := rand.Read(s); err != nil {
		return nil, nil, fmt.Errorf("ephemeral secret: %w", err)
	}
	c, err := New(s)
	return c, s, err
}

// GossipKey returns a copy of the 32-byte memberlist encryption key.
func (c *Cluster) GossipKey() []byte { return append([]byte(nil), c.gossipKey...) }

// CACertificate returns the cluster CA certificate (DER), for diagnostics.
func (c *Cluster) CACertificate() []byte { return append([]byte(nil), c.caCert.Raw...) }
