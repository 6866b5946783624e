package tcp

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/ringtrain/ringtrain/internal/secret"
	"github.com/ringtrain/ringtrain/transport"
	"github.com/ringtrain/ringtrain/transport/internal/peers"
)

// clientTLS is the dialer's TLS configuration toward peer; verifyErr keeps
// our own verdict on the peer's certificate, so a wrong secret is reported
// as such rather than as a generic TLS alert.
func (e *Endpoint) clientTLS(peer string, verifyErr *error) *tls.Config {
	tc := e.node.ClientConfig(peer)
	tc.NextProtos = []string{ALPN}
	// Full-size records from the first byte: dynamic sizing would start
	// every burst after an idle second with ~1 KB records.
	tc.DynamicRecordSizingDisabled = true
	verify := tc.VerifyPeerCertificate
	tc.VerifyPeerCertificate = func(raw [][]byte, chains [][]*x509.Certificate) error {
		err := verify(raw, chains)
		*verifyErr = err
		return err
	}
	return tc
}

func (e *Endpoint) serverTLS() *tls.Config {
	tc := e.node.ServerConfig()
	tc.NextProtos = []string{ALPN}
	tc.DynamicRecordSizingDisabled = true
	verify := tc.VerifyPeerCertificate
	tc.VerifyPeerCertificate = func(raw [][]byte, chains [][]*x509.Certificate) error {
		err := verify(raw, chains)
		if err != nil {
			e.log.Warn("refused an incoming connection", "err", err)
		}
		return err
	}
	return tc
}

// handshakeError explains a failed TLS handshake; wrong secrets are said
// plainly.
func handshakeError(err, verifyErr error) error {
	if verifyErr != nil {
		return verifyErr
	}
	// crypto/tls reports an alert from the peer as a *net.OpError with Op
	// "remote error". In TLS 1.3 the server checks the client's
	// certificate after the client's handshake is done, so the dialer
	// sees the refusal on its first read (the hello ack).
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Op == "remote error" {
		// The peer refused our certificate: it does not trust our CA.
		return fmt.Errorf("%w: the peer refused our certificate (%v)", secret.ErrForeignPeer, err)
	}
	return err
}

// permanent reports dial errors that retrying cannot fix.
func permanent(err error) bool {
	return errors.Is(err, secret.ErrForeignPeer) || errors.Is(err, secret.ErrWrongPeer) ||
		errors.Is(err, peers.ErrDuplicate) || errors.Is(err, transport.ErrProtocol) ||
		errors.Is(err, transport.ErrUnknownPeer) || errors.Is(err, transport.ErrClosed)
}

// readFrame reads one handshake frame of kind want.
func readFrame(r io.Reader, want kind) ([]byte, error) {
	var hb [headerLen]byte
	if _, err := io.ReadFull(r, hb[:]); err != nil {
		return nil, err
	}
	h, err := decodeHeader(&hb, 0)
	if err != nil {
		return nil, err
	}
	if h.kind != want {
		return nil, fmt.Errorf("%w: expected a %s frame, got %s", transport.ErrProtocol, want, h.kind)
	}
	p := make([]byte, h.length) // ≤ maxHelloLen (decodeHeader)
	if _, err := io.ReadFull(r, p); err != nil {
		return nil, err
	}
	return p, nil
}

func writeFrame(w io.Writer, k kind, payload []byte) error {
	b := appendHeader(make([]byte, 0, headerLen+len(payload)), header{kind: k, length: uint32(len(payload))})
	_, err := w.Write(append(b, payload...))
	return err
}

// dialOnce makes one connection attempt: TCP, TLS and hello on every lane,
// then lane 0's ack.
func (e *Endpoint) dialOnce(ctx context.Context, peer, addr string) (*conn, error) {
	hctx, cancel := context.WithTimeout(ctx, e.cfg.HandshakeTimeout)
	defer cancel()
	var socks []*sock
	fail := func(err error) (*conn, error) {
		closeSocks(socks)
		if hctx.Err() != nil && !errors.Is(err, transport.ErrProtocol) {
			return nil, fmt.Errorf("%w (%v)", hctx.Err(), err)
		}
		return nil, err
	}
	hello := helloMsg{version: protocolVersion, incarnation: e.incarnation, epoch: e.epoch.Load(),
		lanes: uint8(e.cfg.Lanes), to: peer}
	if e.cfg.Lanes > 1 {
		var b [8]byte
		if _, err := rand.Read(b[:]); err != nil {
			return nil, fmt.Errorf("bundle id: %w", err)
		}
		hello.bundle = binary.LittleEndian.Uint64(b[:])
	}
	for i := range e.cfg.Lanes {
		s, err := e.dialSock(hctx, peer, addr)
		if err != nil {
			if i > 0 {
				err = fmt.Errorf("lane %d of %d: %w", i, e.cfg.Lanes, err)
			}
			return fail(err)
		}
		socks = append(socks, s)
		hello.lane = uint8(i)
		if err := writeFrame(s.tc, kindHello, hello.appendTo(nil)); err != nil {
			return fail(err)
		}
	}
	p, err := readFrame(socks[0].tc, kindAck)
	if err != nil {
		return fail(fmt.Errorf("reading the peer's hello ack: %w", handshakeError(err, nil)))
	}
	ack, err := decodeAck(p)
	switch {
	case err != nil:
		return fail(err)
	case !ack.accepted && ack.reason == peers.ErrDuplicate.Error():
		closeSocks(socks)
		return nil, peers.ErrDuplicate
	case !ack.accepted:
		return fail(fmt.Errorf("%w: peer refused the connection: %s", transport.ErrProtocol, ack.reason))
	}
	for _, s := range socks {
		if !s.release() {
			return fail(hctx.Err())
		}
	}
	return e.newBundle(peer, socks, true, ack.incarnation), nil
}

// dialSock dials one TCP connection to peer and runs the TLS handshake;
// hctx's deadline covers it and the hello exchange after it, and hctx
// ending earlier (FailPeer, Close) interrupts it too.
func (e *Endpoint) dialSock(hctx context.Context, peer, addr string) (*sock, error) {
	d := net.Dialer{KeepAlive: -1} // tune sets keep-alive
	nc, err := d.DialContext(hctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	raw := nc.(*net.TCPConn)
	if err := tune(raw, e.cfg.UserTimeout); err != nil {
		raw.Close()
		return nil, err
	}
	bc := newBufConn(raw)
	var verifyErr error
	tc := tls.Client(bc, e.clientTLS(peer, &verifyErr))
	deadline, _ := hctx.Deadline()
	raw.SetDeadline(deadline)
	s := &sock{raw: raw, bc: bc, tc: tc, stopFn: context.AfterFunc(hctx, func() { raw.SetDeadline(time.Now()) })}
	if err := tc.HandshakeContext(hctx); err != nil {
		raw.Close()
		return nil, handshakeError(err, verifyErr)
	}
	if p := tc.ConnectionState().NegotiatedProtocol; p != ALPN {
		raw.Close()
		return nil, fmt.Errorf("%w: peer speaks %q, want %q", transport.ErrProtocol, p, ALPN)
	}
	return s, nil
}

func (e *Endpoint) acceptLoop() {
	for {
		nc, err := e.ln.AcceptTCP()
		if err != nil {
			if errors.Is(err, net.ErrClosed) || e.ctx.Err() != nil {
				return
			}
			e.log.Warn("accept failed", "err", err)
			t := time.NewTimer(50 * time.Millisecond)
			select {
			case <-t.C:
			case <-e.ctx.Done():
				t.Stop()
				return
			}
			continue
		}
		e.wg.Go(func() { e.handleIncoming(nc) })
	}
}

// handleIncoming runs the acceptor's side of the handshake and decides
// whether the new connection becomes the pair's connection (see the
// package comment).
func (e *Endpoint) handleIncoming(raw *net.TCPConn) {
	ctx, cancel := context.WithTimeout(e.ctx, e.cfg.HandshakeTimeout)
	defer cancel()
	if err := tune(raw, e.cfg.UserTimeout); err != nil {
		raw.Close()
		return
	}
	deadline, _ := ctx.Deadline()
	raw.SetDeadline(deadline)
	bc := newBufConn(raw)
	tc := tls.Server(bc, e.serverTLS())
	s := &sock{raw: raw, bc: bc, tc: tc, stopFn: context.AfterFunc(ctx, func() { raw.SetDeadline(time.Now()) })}
	defer s.stopDeadline()
	if err := tc.HandshakeContext(ctx); err != nil {
		raw.Close()
		return
	}
	peer, err := e.cfg.cluster.PeerID(tc.ConnectionState())
	if err != nil { // cannot happen after VerifyPeerCertificate; be safe
		raw.Close()
		return
	}
	refuse := func(why string) {
		e.log.Warn("refused a connection", "peer", peer, "remote", raw.RemoteAddr().String(), "reason", why)
		writeFrame(tc, kindAck, ackMsg{reason: why}.appendTo(nil)) //nolint:errcheck // best effort before closing
		raw.Close()
	}
	if p := tc.ConnectionState().NegotiatedProtocol; p != ALPN {
		refuse(fmt.Sprintf("protocol %q, want %q", p, ALPN))
		return
	}
	p, err := readFrame(tc, kindHello)
	if err != nil {
		refuse("reading hello: " + err.Error())
		return
	}
	h, err := decodeHello(p)
	switch {
	case err != nil:
		refuse(err.Error())
		return
	case h.version != protocolVersion:
		refuse(fmt.Sprintf("protocol version %d, want %d", h.version, protocolVersion))
		return
	case h.to != e.cfg.ID:
		refuse(fmt.Sprintf("dialed node %q, reached %q", h.to, e.cfg.ID))
		return
	case h.lanes != uint8(e.cfg.Lanes):
		refuse(fmt.Sprintf("the dialer uses %d lanes (connections per peer), this node %d: every node needs the same", h.lanes, e.cfg.Lanes))
		return
	}
	if h.lane > 0 {
		if why := e.depositLane(ctx, peer, h, s); why != "" {
			refuse(why)
		}
		return
	}
	socks := []*sock{s}
	if h.lanes > 1 {
		var finish func()
		socks, finish = e.collectLanes(ctx, peer, h, s)
		defer finish()
		if socks == nil {
			refuse(fmt.Sprintf("not all %d lanes of the connection arrived within %v", h.lanes, e.cfg.HandshakeTimeout))
			return
		}
	}
	err = e.peers.Admit(peer, h.incarnation, func() (*conn, error) {
		// The ack is written before the connection is installed and its
		// goroutines start, so nothing can come before it; Conn on this
		// side finds the connection once the dialer holds the ack.
		if err := writeFrame(tc, kindAck, ackMsg{accepted: true, incarnation: e.incarnation}.appendTo(nil)); err != nil {
			return nil, err
		}
		for _, s := range socks {
			if !s.release() {
				return nil, ctx.Err()
			}
		}
		return e.newBundle(peer, socks, false, h.incarnation), nil
	})
	switch {
	case errors.Is(err, peers.ErrDuplicate):
		writeFrame(tc, kindAck, ackMsg{reason: peers.ErrDuplicate.Error(), incarnation: e.incarnation}.appendTo(nil)) //nolint:errcheck // the dialer retries or waits either way
		closeSocks(socks)
	case err != nil:
		closeSocks(socks)
	}
}
