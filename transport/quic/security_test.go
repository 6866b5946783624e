package quic

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	quicgo "github.com/quic-go/quic-go"

	"github.com/ringtrain/ringtrain/internal/secret"
	"github.com/ringtrain/ringtrain/internal/wire"
	"github.com/ringtrain/ringtrain/transport"
)

// TestWrongSecretRefusedBothWays: nodes with different secrets cannot
// connect in either direction, and both dialers say why plainly and at once
// (no retries until the deadline).
func TestWrongSecretRefusedBothWays(t *testing.T) {
	clA := []byte("the secret of cluster A")
	clB := []byte("the secret of cluster B")
	a := newCluster(t, clA, []string{"a"}, nil)[0]
	b := newCluster(t, clB, []string{"b"}, nil)[0]
	a.AddPeer("b", b.Addr())
	b.AddPeer("a", a.Addr())
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
			if err == nil {
				t.Fatal("connected across cluster secrets")
			}
			if !errors.Is(err, secret.ErrForeignPeer) || !strings.Contains(err.Error(), "wrong cluster secret") {
				t.Fatalf("error %q does not say the secret is wrong", err)
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
	eps[0].AddPeer("b", eps[2].Addr()) // "b" now points at c
	_, err := eps[0].Conn(ctxT(t, 10*time.Second), "b")
	if !errors.Is(err, secret.ErrWrongPeer) {
		t.Fatalf("got %v, want ErrWrongPeer", err)
	}
}

// logBuffer is a slog handler target that tests can read.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// rawPeer is a hand-driven QUIC client with a valid certificate for id: it
// completes the handshake and Hello, then sends whatever the test wants.
type rawPeer struct {
	qc   *quicgo.Conn
	ctrl *quicgo.Stream
}

func dialRaw(t *testing.T, cl *secret.Cluster, id string, to *Endpoint) *rawPeer {
	t.Helper()
	node, err := cl.Node(id)
	if err != nil {
		t.Fatal(err)
	}
	udp, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	tr := &quicgo.Transport{Conn: udp}
	t.Cleanup(func() { tr.Close(); udp.Close() })
	ua, _ := net.ResolveUDPAddr("udp", to.Addr())
	ctx := ctxT(t, 10*time.Second)
	cfg, _ := Config{ID: id, Secret: testSecret()}.withDefaults()
	qc, err := tr.Dial(ctx, ua, node.ClientConfig(to.ID()), cfg.quicConfig())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { qc.CloseWithError(0, "") })
	ctrl, err := qc.OpenStream()
	if err != nil {
		t.Fatal(err)
	}
	p := &rawPeer{qc: qc, ctrl: ctrl}
	p.control(t, &wire.Control{Body: &wire.Control_Hello{Hello: &wire.Hello{
		NodeId: id, ToNodeId: to.ID(), ProtocolVersion: wire.ProtocolVersion, Incarnation: 1,
	}}})
	body, err := wire.ReadFrame(ctrl, make([]byte, wire.MaxControlSize), wire.MaxControlSize)
	if err != nil {
		t.Fatal(err)
	}
	m, err := wire.DecodeControl(body)
	if err != nil || !m.GetHelloAck().GetAccepted() {
		t.Fatalf("hello refused: %v %v", m, err)
	}
	return p
}

func (p *rawPeer) control(t *testing.T, m *wire.Control) {
	t.Helper()
	f, err := wire.AppendFrame(nil, m, wire.MaxControlSize)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.ctrl.Write(f); err != nil {
		t.Fatal(err)
	}
}

// stream sends raw bytes on a new data stream and closes it.
func (p *rawPeer) stream(t *testing.T, b []byte) {
	t.Helper()
	s, err := p.qc.OpenUniStream()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Write(b); err != nil {
		t.Fatal(err)
	}
	s.Close()
}

func header(t *testing.T, h *wire.DataHeader) []byte {
	t.Helper()
	f, err := wire.AppendFrame(nil, h, wire.MaxHeaderSize)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func prefixed(body ...byte) []byte {
	return append(binary.BigEndian.AppendUint32(nil, uint32(len(body))), body...)
}

// TestMalformedInputNamesPeer: a peer with a valid certificate that breaks
// the wire protocol makes the pending receive fail with ErrProtocol naming
// it, quickly, and the endpoint keeps serving others.
func TestMalformedInputNamesPeer(t *testing.T) {
	tag := transport.Tag{Epoch: 1, Op: 1}
	tests := []struct {
		name   string
		attack func(t *testing.T, p *rawPeer)
	}{
		{"header length over bound", func(t *testing.T, p *rawPeer) { p.stream(t, []byte{0xff, 0xff, 0xff, 0xff}) }},
		{"header not protobuf", func(t *testing.T, p *rawPeer) { p.stream(t, prefixed(0xff, 0xff, 0xff)) }},
		{"truncated header", func(t *testing.T, p *rawPeer) { p.stream(t, []byte{0, 0, 0, 10, 8, 1}) }},
		{"unknown dtype", func(t *testing.T, p *rawPeer) {
			p.stream(t, header(t, &wire.DataHeader{Epoch: 1, Op: 1, Length: 4, Dtype: 7}))
		}},
		{"payload over limit", func(t *testing.T, p *rawPeer) {
			p.stream(t, header(t, &wire.DataHeader{Epoch: 1, Op: 1, Length: wire.DefaultMaxPayload + 1}))
		}},
		{"payload shorter than header", func(t *testing.T, p *rawPeer) {
			p.stream(t, append(header(t, &wire.DataHeader{Epoch: 1, Op: 1, Length: 100}), make([]byte, 10)...))
		}},
		{"bytes after a message that are no frame", func(t *testing.T, p *rawPeer) {
			p.stream(t, append(header(t, &wire.DataHeader{Epoch: 1, Op: 1, Length: 4}), 1, 2, 3, 4, 0xff, 0xff, 0xff, 0xff))
		}},
		{"message of another tag on a stream", func(t *testing.T, p *rawPeer) {
			p.stream(t, append(header(t, &wire.DataHeader{Epoch: 1, Op: 1}), header(t, &wire.DataHeader{Epoch: 1, Op: 2})...))
		}},
		{"stream ends inside a second header", func(t *testing.T, p *rawPeer) {
			p.stream(t, append(header(t, &wire.DataHeader{Epoch: 1, Op: 1}), 0, 0, 0, 9, 8))
		}},
		{"control frame over bound", func(t *testing.T, p *rawPeer) { p.ctrl.Write([]byte{0x7f, 0xff, 0xff, 0xff}) }},
		{"control frame not protobuf", func(t *testing.T, p *rawPeer) { p.ctrl.Write(prefixed(0xff, 0xff)) }},
		{"control frame without body", func(t *testing.T, p *rawPeer) { p.ctrl.Write(prefixed()) }},
		{"second hello", func(t *testing.T, p *rawPeer) {
			p.control(t, &wire.Control{Body: &wire.Control_Hello{Hello: &wire.Hello{NodeId: "mallory"}}})
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cl := testCluster(t)
			var logs logBuffer
			eps := newCluster(t, testSecret(), []string{"b", "c"}, func(c *Config) { c.Logger = slog.New(slog.NewTextHandler(&logs, nil)) })
			b := eps[0]
			p := dialRaw(t, cl, "mallory", b)
			ctx := ctxT(t, 10*time.Second)
			c, err := b.Conn(ctx, "mallory")
			if err != nil {
				t.Fatal(err)
			}
			// Well-formed messages before the bad bytes are delivered;
			// the receive after them fails.
			errc := make(chan error, 1)
			go func() {
				for {
					if _, err := c.Recv(ctx, tag, make([]byte, 256)); err != nil {
						errc <- err
						return
					}
				}
			}()
			tt.attack(t, p)
			err = <-errc
			if !errors.Is(err, transport.ErrProtocol) || !strings.Contains(err.Error(), "mallory") {
				t.Fatalf("got %v, want ErrProtocol naming mallory", err)
			}
			if !strings.Contains(logs.String(), "peer=mallory") {
				t.Errorf("no log line names the peer:\n%s", logs.String())
			}
			// The endpoint still serves well-behaved peers.
			cc, err := eps[1].Conn(ctx, "b")
			if err != nil {
				t.Fatal(err)
			}
			if err := cc.Send(ctx, tag, []byte("ok")); err != nil {
				t.Fatal(err)
			}
			bc, err := b.Conn(ctx, "c")
			if err != nil {
				t.Fatal(err)
			}
			if n, err := bc.Recv(ctx, tag, make([]byte, 8)); err != nil || n != 2 {
				t.Fatalf("after the attack: %d %v", n, err)
			}
		})
	}
}

// TestOldEpochRefused: a message from an epoch below the receiver's is not
// delivered; the receiver logs the sender, and the sender's later calls on
// that tag fail with ErrEpoch naming the receiver.
func TestOldEpochRefused(t *testing.T) {
	var logs logBuffer
	eps := newCluster(t, testSecret(), []string{"a", "b"}, func(c *Config) {
		c.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	})
	a, b := eps[0], eps[1]
	ctx := ctxT(t, 10*time.Second)
	b.SetEpoch(5)
	ab, err := a.Conn(ctx, "b")
	if err != nil {
		t.Fatal(err)
	}
	ba, err := b.Conn(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	stale := transport.Tag{Epoch: 3, Op: 1}
	current := transport.Tag{Epoch: 5, Op: 1}
	if err := ab.Send(ctx, stale, []byte("old")); err != nil && !errors.Is(err, transport.ErrEpoch) {
		t.Fatalf("send of a stale message: %v", err)
	}
	// The refusal reaches the sender asynchronously; poll its next calls.
	deadline := time.Now().Add(5 * time.Second)
	for {
		err = ab.Send(ctx, stale, []byte("old"))
		if err != nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if !errors.Is(err, transport.ErrEpoch) || !strings.Contains(err.Error(), "b") {
		t.Fatalf("sender: got %v, want ErrEpoch naming b", err)
	}
	if !strings.Contains(logs.String(), "peer=a") || !strings.Contains(logs.String(), "old epoch") {
		t.Errorf("receiver log does not name the sender:\n%s", logs.String())
	}
	// The stale message was never delivered: the current epoch's first
	// message is the next one b reads.
	if err := ab.Send(ctx, current, []byte("new")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 8)
	n, err := ba.Recv(ctx, current, buf)
	if err != nil || string(buf[:n]) != "new" {
		t.Fatalf("current epoch: %q %v", buf[:n], err)
	}
	sctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	if _, err := ba.Recv(sctx, stale, buf); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("stale tag at the receiver: got %v, want nothing delivered", err)
	}
}

func TestUDPBufferAdvice(t *testing.T) {
	tests := []struct {
		name     string
		rcv, snd int
		warn     bool
	}{
		{"both large", 8 << 20, 8 << 20, false},
		{"small receive", 4 << 20, 8 << 20, true},
		{"small send", 8 << 20, 208 << 10, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			msg := udpBufferAdvice(tt.rcv, tt.snd)
			if (msg != "") != tt.warn {
				t.Fatalf("advice %q, want warning %v", msg, tt.warn)
			}
			if tt.warn && !strings.Contains(msg, "net.core.rmem_max") {
				t.Fatalf("advice %q does not name the sysctl", msg)
			}
		})
	}
}
