package mem_test

import (
	"context"
	"errors"
	"testing"
	"testing/synctest"
	"time"

	"github.com/ringtrain/ringtrain/transport"
	"github.com/ringtrain/ringtrain/transport/mem"
)

func pair(t *testing.T, n *mem.Network) (transport.Conn, transport.Conn) {
	t.Helper()
	eps, err := n.Endpoints("a", "b")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	ab, err := eps[0].Conn(ctx, "b")
	if err != nil {
		t.Fatal(err)
	}
	ba, err := eps[1].Conn(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	return ab, ba
}

// TestLinkTiming checks the link model in fake time: a message arrives after
// its serialization time (bytes/rate) plus the one-way delay.
func TestLinkTiming(t *testing.T) {
	cases := []struct {
		name  string
		link  mem.Link
		msgs  int
		bytes int
		want  time.Duration
	}{
		{"perfect", mem.Link{}, 3, 1000, 0},
		{"delay", mem.Link{Delay: 30 * time.Millisecond}, 3, 1000, 30 * time.Millisecond},
		{"rate", mem.Link{Rate: 1e6}, 4, 250_000, time.Second},
		{"rate and delay", mem.Link{Rate: 1e6, Delay: 5 * time.Millisecond}, 2, 500_000, time.Second + 5*time.Millisecond},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				n := mem.NewNetwork()
				ab, ba := pair(t, n)
				n.SetLink("a", "b", tc.link)
				ctx := context.Background()
				tag := transport.Tag{Op: 1}
				start := time.Now()
				go func() {
					for range tc.msgs {
						if err := ab.Send(ctx, tag, make([]byte, tc.bytes)); err != nil {
							t.Error(err)
						}
					}
				}()
				buf := make([]byte, tc.bytes)
				for range tc.msgs {
					if _, err := ba.Recv(ctx, tag, buf); err != nil {
						t.Fatal(err)
					}
				}
				if got := time.Since(start); got != tc.want {
					t.Fatalf("last message after %v, want %v", got, tc.want)
				}
			})
		})
	}
}

// TestDropAndCrash: a dropped link loses messages (the receiver's deadline
// ends its wait); a crash fails the peer's pending receive at once.
func TestDropAndCrash(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := mem.NewNetwork()
		ab, ba := pair(t, n)
		tag := transport.Tag{Op: 2}
		n.SetLink("a", "b", mem.Link{Drop: true})
		if err := ab.Send(context.Background(), tag, []byte("lost")); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		if _, err := ba.Recv(ctx, tag, make([]byte, 8)); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("recv over a dropped link: %v", err)
		}
		n.SetLink("a", "b", mem.Link{})
		start := time.Now()
		go func() {
			time.Sleep(10 * time.Millisecond)
			n.Crash("a")
		}()
		_, err := ba.Recv(context.Background(), tag, make([]byte, 8))
		if !errors.Is(err, transport.ErrPeerLost) || time.Since(start) != 10*time.Millisecond {
			t.Fatalf("recv from a crashed peer: %v after %v", err, time.Since(start))
		}
	})
}
