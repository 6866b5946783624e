package tcp

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/ringtrain/ringtrain/transport"
)

// poll waits until cond holds, failing after d; it checks state another
// goroutine reaches (a reader, a blocked Recv), never elapsed time.
func poll(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not after %v", what, d)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// warnings counts the records of level Warn and above.
type warnings struct {
	mu   sync.Mutex
	msgs []string
}

func (w *warnings) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelWarn }
func (w *warnings) Handle(_ context.Context, r slog.Record) error {
	w.mu.Lock()
	w.msgs = append(w.msgs, r.Message)
	w.mu.Unlock()
	return nil
}
func (w *warnings) WithAttrs([]slog.Attr) slog.Handler { return w }
func (w *warnings) WithGroup(string) slog.Handler      { return w }

func (w *warnings) all() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.msgs)
}

// TestIdleActivity: which states of a connection keep IdleClose from
// closing it (busy), and that every message counts as traffic.
func TestIdleActivity(t *testing.T) {
	ctrl := transport.Tag{Epoch: 1, Op: transport.ControlOpBase}
	data := transport.Tag{Epoch: 1, Op: 1}
	type state struct {
		traffic uint64
		busy    bool
	}
	tests := []struct {
		name string
		// setup brings the pair into the state; ready tells when the
		// goroutines it started got there.
		setup        func(t *testing.T, ctx context.Context, ab, ba transport.Conn)
		ready        func(a, b *conn) bool
		wantA, wantB state
	}{
		{
			name:  "fresh connection",
			setup: func(*testing.T, context.Context, transport.Conn, transport.Conn) {},
			ready: func(a, b *conn) bool { return true },
		},
		{
			name: "control Recv waiting is not busy",
			setup: func(t *testing.T, ctx context.Context, _, ba transport.Conn) {
				go ba.Recv(ctx, ctrl, make([]byte, 8)) //nolint:errcheck // ends with the test's connections
			},
			ready: func(_, b *conn) bool { return users(b, ctrl) == 1 },
			wantB: state{traffic: 1},
		},
		{
			name: "data Recv waiting is busy",
			setup: func(t *testing.T, ctx context.Context, _, ba transport.Conn) {
				go ba.Recv(ctx, data, make([]byte, 8)) //nolint:errcheck // ends with the test's connections
			},
			ready: func(_, b *conn) bool { return users(b, data) == 1 },
			wantB: state{traffic: 1, busy: true},
		},
		{
			name: "unread data message: busy at the receiver, credit outstanding at the sender",
			setup: func(t *testing.T, ctx context.Context, ab, _ transport.Conn) {
				if err := ab.Send(ctx, data, []byte("unread")); err != nil {
					t.Fatal(err)
				}
			},
			ready: func(_, b *conn) bool { return arrived(b) == 1 },
			wantA: state{traffic: 1, busy: true},
			wantB: state{traffic: 1, busy: true},
		},
		{
			name: "unread control message is traffic, not busy",
			setup: func(t *testing.T, ctx context.Context, ab, _ transport.Conn) {
				if err := ab.Send(ctx, ctrl, []byte("unread")); err != nil {
					t.Fatal(err)
				}
			},
			ready: func(_, b *conn) bool { return arrived(b) == 1 },
			wantA: state{traffic: 1},
			wantB: state{traffic: 1},
		},
		{
			name: "data message read: credit back, nothing busy",
			setup: func(t *testing.T, ctx context.Context, ab, ba transport.Conn) {
				if err := ab.Send(ctx, data, []byte("read")); err != nil {
					t.Fatal(err)
				}
				if _, err := ba.Recv(ctx, data, make([]byte, 8)); err != nil {
					t.Fatal(err)
				}
			},
			ready: func(a, _ *conn) bool { _, busy := a.activity(); return !busy },
			wantA: state{traffic: 1},
			wantB: state{traffic: 2}, // the message arrived, and a Recv
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, ab, ba := pair(t)
			ctx := ctxT(t, 10*time.Second)
			tt.setup(t, ctx, ab, ba)
			a, b := ab.(*conn), ba.(*conn)
			poll(t, "setup", 5*time.Second, func() bool { return tt.ready(a, b) })
			for _, x := range []struct {
				end  string
				c    *conn
				want state
			}{{"a", a, tt.wantA}, {"b", b, tt.wantB}} {
				traffic, busy := x.c.activity()
				if got := (state{traffic, busy}); got != x.want {
					t.Errorf("%s: activity = %+v, want %+v", x.end, got, x.want)
				}
			}
		})
	}
}

func users(c *conn, tag transport.Tag) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if ts := c.tags[tag]; ts != nil {
		return ts.users
	}
	return 0
}

func arrived(c *conn) uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.arrived
}

// TestIdleClose: with Config.IdleClose a connection that carried nothing
// for that long closes on both ends, and neither takes it for a loss:
// control Recvs waiting on both ends fail with ErrClosed, not ErrPeerLost,
// and nothing is logged as a warning. The next Conn dials a new
// connection, which works.
func TestIdleClose(t *testing.T) {
	const idle = 200 * time.Millisecond
	var warn warnings
	eps := newCluster(t, testSecret(), []string{"a", "b"}, func(c *Config) {
		c.IdleClose = idle
		c.Logger = slog.New(&warn)
	})
	a, b := eps[0], eps[1]
	ctx := ctxT(t, 30*time.Second)
	ctrl := transport.Tag{Epoch: 1, Op: transport.ControlOpBase}
	data := transport.Tag{Epoch: 1, Op: 1}
	buf := make([]byte, 8)

	ca, err := a.Conn(ctx, "b")
	if err != nil {
		t.Fatal(err)
	}
	if err := ca.Send(ctx, data, []byte("ping")); err != nil {
		t.Fatal(err)
	}
	cb, err := b.Conn(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	if n, err := cb.Recv(ctx, data, buf); err != nil || string(buf[:n]) != "ping" {
		t.Fatalf("recv %q, %v", buf[:n], err)
	}
	start := time.Now()
	errs := make(chan error, 2)
	for _, c := range []transport.Conn{ca, cb} {
		go func() {
			_, err := c.Recv(ctx, ctrl, make([]byte, 8))
			errs <- err
		}()
	}
	for _, e := range eps {
		poll(t, e.ID()+" disconnected", 20*idle, func() bool { return len(e.Connected()) == 0 })
	}
	if d := time.Since(start); d < idle {
		t.Errorf("closed after %v, before IdleClose %v", d, idle)
	}
	for range 2 {
		if err := <-errs; !errors.Is(err, transport.ErrClosed) || errors.Is(err, transport.ErrPeerLost) {
			t.Errorf("control Recv on an idle-closed connection: %v; want ErrClosed, not ErrPeerLost", err)
		}
	}
	if err := ca.Send(ctx, data, []byte("late")); !errors.Is(err, transport.ErrClosed) || errors.Is(err, transport.ErrPeerLost) {
		t.Errorf("Send on the idle-closed connection: %v; want ErrClosed, not ErrPeerLost", err)
	}

	ca2, err := a.Conn(ctx, "b")
	if err != nil {
		t.Fatal(err)
	}
	if ca2 == ca {
		t.Fatal("Conn returned the idle-closed connection")
	}
	if err := ca2.Send(ctx, data, []byte("again")); err != nil {
		t.Fatalf("Send on the new connection: %v", err)
	}
	cb2, err := b.Conn(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	if n, err := cb2.Recv(ctx, data, buf); err != nil || string(buf[:n]) != "again" {
		t.Fatalf("recv on the new connection: %q, %v", buf[:n], err)
	}
	if w := warn.all(); len(w) != 0 {
		t.Errorf("warnings logged: %q", w)
	}
}
