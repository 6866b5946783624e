package quic

import (
	"bufio"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/ringtrain/ringtrain/internal/secret"
	"github.com/ringtrain/ringtrain/transport"
)

// envIdleChild marks the child process of TestKilledPeerNoticed.
const envIdleChild = "RINGTRAIN_QUIC_IDLE_CHILD"

// fastIdle is the idle timeout TestKilledPeerNoticed configures on both ends.
const fastIdle = 3 * time.Second

// TestKilledPeerNoticed: with a keep-alive of 1 s and a 3 s idle timeout, a
// peer process killed with SIGKILL (no CONNECTION_CLOSE is sent) on an idle
// link is reported as ErrPeerLost by a pending Recv within the idle timeout
// plus a margin for this loaded machine.
func TestKilledPeerNoticed(t *testing.T) {
	if os.Getenv(envIdleChild) != "" {
		runIdleChild(t)
		return
	}
	_, sec, err := secret.Ephemeral()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestKilledPeerNoticed$")
	cmd.Env = append(os.Environ(), envIdleChild+"=1", envSecret+"="+hex.EncodeToString(sec))
	stdin, err := cmd.StdinPipe() // held open: the child waits on it
	if err != nil {
		t.Fatal(err)
	}
	defer stdin.Close()
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait() //nolint:errcheck // killed below
	defer cmd.Process.Kill()
	addr, err := readAddr(stdout)
	if err != nil {
		t.Fatal(err)
	}
	go io.Copy(io.Discard, stdout) //nolint:errcheck // drain the child's output

	e, err := Listen(Config{ID: "parent", Secret: sec, Logger: slog.New(slog.DiscardHandler), IdleTimeout: fastIdle})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	e.AddPeer("child", addr)
	c, err := e.Conn(ctx, "child")
	if err != nil {
		t.Fatal(err)
	}
	tag := transport.Tag{Epoch: 1, Op: 1}
	if err := c.Send(ctx, tag, []byte("ping")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 8)
	if _, err := c.Recv(ctx, tag, buf); err != nil { // the child echoes
		t.Fatal(err)
	}
	// The link stays idle but for keep-alives, longer than the idle timeout:
	// a live peer must not be declared lost.
	idle, cancelIdle := context.WithTimeout(ctx, 2*fastIdle)
	_, err = c.Recv(idle, transport.Tag{Epoch: 1, Op: 2}, buf)
	cancelIdle()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("idle link to a live peer: got %v, want the deadline", err)
	}
	errc := make(chan error, 1)
	go func() {
		_, err := c.Recv(ctx, transport.Tag{Epoch: 1, Op: 3}, buf)
		errc <- err
	}()
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	limit := fastIdle + 2*time.Second
	select {
	case err := <-errc:
		took := time.Since(start)
		if !errors.Is(err, transport.ErrPeerLost) {
			t.Fatalf("got %v, want ErrPeerLost", err)
		}
		t.Logf("killed peer noticed after %v (idle timeout %v): %v", took.Round(time.Millisecond), fastIdle, err)
	case <-time.After(limit):
		t.Fatalf("killed peer not noticed within %v", limit)
	}
}

func readAddr(r io.Reader) (string, error) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		if a, ok := strings.CutPrefix(sc.Text(), "ADDR "); ok {
			return a, nil
		}
	}
	return "", fmt.Errorf("child exited without an address: %v", sc.Err())
}

// runIdleChild echoes one message, then idles until killed.
func runIdleChild(t *testing.T) {
	sec, err := hex.DecodeString(os.Getenv(envSecret))
	if err != nil {
		t.Fatal(err)
	}
	e, err := Listen(Config{ID: "child", Secret: sec, Logger: slog.New(slog.DiscardHandler), IdleTimeout: fastIdle})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	fmt.Printf("ADDR %s\n", e.Addr())
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for e.peerConn("parent") == nil {
		select {
		case <-ctx.Done():
			t.Fatal("the parent never connected")
		case <-time.After(10 * time.Millisecond):
		}
	}
	c, err := e.Conn(ctx, "parent")
	if err != nil {
		t.Fatal(err)
	}
	tag := transport.Tag{Epoch: 1, Op: 1}
	buf := make([]byte, 8)
	n, err := c.Recv(ctx, tag, buf)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Send(ctx, tag, buf[:n]); err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, os.Stdin) //nolint:errcheck // until the parent kills us
}

// peerConn is the installed connection to id, if any.
func (e *Endpoint) peerConn(id string) *conn {
	c, _ := e.peers.Get(id)
	return c
}
