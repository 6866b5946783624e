package allreduce

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"flag"
	"fmt"
	"io"
	"math/big"
	"os/exec"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/ringtrain/ringtrain/bench/cluster"
)

// The raw quic-go reference: one stream over one connection between two
// peers on the same (shaped) links the all-reduce uses, carrying bulk data
// for a fixed time. Its goodput is the transport's physical limit on those
// links, so it is measured in the same run as the collectives it bounds.
// It is a measurement tool only: it uses a throwaway self-signed
// certificate and the client skips verification.

const rawQUICALPN = "ringtrain-bench-raw"

// rawQUICResult is what each side of the reference reports.
type rawQUICResult struct {
	Bytes   int64   `json:"bytes"`
	Seconds float64 `json:"seconds"` // receiver: first byte to end of stream
	CPU     float64 `json:"cpu_s"`   // user+system over the transfer
}

// rawQUICConfig is the QUIC configuration of both sides: flow-control
// windows large enough that a window never limits a shaped link.
func rawQUICConfig() *quic.Config {
	return &quic.Config{
		MaxStreamReceiveWindow:     16 << 20,
		MaxConnectionReceiveWindow: 24 << 20,
		MaxIdleTimeout:             30 * time.Second,
	}
}

// RawQUICCommand is the hidden subcommand of one side of the reference.
const RawQUICCommand = "rawquic"

// RunRawQUIC is the hidden "rawquic" subcommand, one side of the reference
// transfer.
func RunRawQUIC(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet(RawQUICCommand, flag.ContinueOnError)
	role := fs.String("role", "", "recv or send")
	addr := fs.String("addr", "", "receiver's UDP address")
	dur := fs.Duration("duration", 3*time.Second, "sender: how long to send")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, *dur+30*time.Second)
	defer cancel()
	switch *role {
	case "recv":
		return rawQUICRecv(ctx, *addr)
	case "send":
		return rawQUICSend(ctx, *addr, *dur)
	}
	return fmt.Errorf("rawquic: --role must be recv or send, not %q", *role)
}

func rawQUICRecv(ctx context.Context, addr string) error {
	cert, err := selfSignedCert()
	if err != nil {
		return err
	}
	ln, err := quic.ListenAddr(addr, &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{rawQUICALPN}}, rawQUICConfig())
	if err != nil {
		return fmt.Errorf("rawquic: listen %s: %w", addr, err)
	}
	defer ln.Close()
	ctx, drv, err := cluster.Handshake(ctx)
	if err != nil {
		return err
	}
	conn, err := ln.Accept(ctx)
	if err != nil {
		return fmt.Errorf("rawquic: accept on %s: %w", addr, err)
	}
	defer conn.CloseWithError(0, "done")
	st, err := conn.AcceptStream(ctx)
	if err != nil {
		return fmt.Errorf("rawquic: accept stream from %s: %w", conn.RemoteAddr(), err)
	}
	buf := make([]byte, 1<<20)
	// The clock starts at the first byte so the handshake is not counted.
	n, err := io.ReadAtLeast(st, buf, 1)
	if err != nil {
		return fmt.Errorf("rawquic: read from %s: %w", conn.RemoteAddr(), err)
	}
	t0, cpu0 := time.Now(), cluster.SelfCPU()
	total := int64(n)
	for {
		n, err := st.Read(buf)
		total += int64(n)
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("rawquic: read from %s: %w", conn.RemoteAddr(), err)
		}
	}
	res := rawQUICResult{Bytes: total, Seconds: time.Since(t0).Seconds(), CPU: cluster.SelfCPU() - cpu0}
	// Acknowledge the end so the sender does not close before we are done.
	if _, err := st.Write([]byte{1}); err != nil {
		return fmt.Errorf("rawquic: ack to %s: %w", conn.RemoteAddr(), err)
	}
	_ = st.Close()
	// Closing our side first would race the ack: wait for the sender to
	// close the connection once it has read it.
	select {
	case <-conn.Context().Done():
	case <-time.After(5 * time.Second):
	case <-ctx.Done():
	}
	return drv.Finish(ctx, res)
}

func rawQUICSend(ctx context.Context, addr string, dur time.Duration) error {
	ctx, drv, err := cluster.Handshake(ctx)
	if err != nil {
		return err
	}
	tlsConf := &tls.Config{InsecureSkipVerify: true, NextProtos: []string{rawQUICALPN}}
	conn, err := quic.DialAddr(ctx, addr, tlsConf, rawQUICConfig())
	if err != nil {
		return fmt.Errorf("rawquic: dial %s: %w", addr, err)
	}
	defer conn.CloseWithError(0, "done")
	st, err := conn.OpenStreamSync(ctx)
	if err != nil {
		return fmt.Errorf("rawquic: open stream to %s: %w", addr, err)
	}
	buf := make([]byte, 256<<10)
	t0, cpu0 := time.Now(), cluster.SelfCPU()
	var total int64
	for time.Since(t0) < dur {
		n, err := st.Write(buf)
		total += int64(n)
		if err != nil {
			return fmt.Errorf("rawquic: write to %s: %w", addr, err)
		}
	}
	if err := st.Close(); err != nil {
		return fmt.Errorf("rawquic: close stream to %s: %w", addr, err)
	}
	if _, err := io.ReadFull(st, make([]byte, 1)); err != nil {
		return fmt.Errorf("rawquic: ack from %s: %w", addr, err)
	}
	return drv.Finish(ctx, rawQUICResult{Bytes: total, Seconds: time.Since(t0).Seconds(), CPU: cluster.SelfCPU() - cpu0})
}

// rawQUICRef runs the reference transfer from sender to receiver (the two
// commands run the bench binary in the right place) and returns the bytes
// received, goodput in bytes per second and CPU seconds per GiB carried,
// both ends together.
func rawQUICRef(ctx context.Context, recv, send *exec.Cmd) (bytes int64, goodput, cpuPerGiB float64, err error) {
	var r, s rawQUICResult
	if err := cluster.RunProcs(ctx, []string{"rawquic receiver", "rawquic sender"}, []*exec.Cmd{recv, send}, []any{&r, &s}); err != nil {
		return 0, 0, 0, err
	}
	if r.Seconds <= 0 || r.Bytes == 0 {
		return 0, 0, 0, fmt.Errorf("rawquic: nothing received")
	}
	return r.Bytes, float64(r.Bytes) / r.Seconds, (r.CPU + s.CPU) / (float64(r.Bytes) / (1 << 30)), nil
}

func selfSignedCert() (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		DNSNames:     []string{"ringtrain-bench"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}
