package tcp

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/ringtrain/ringtrain/collective/collectivetest"
	"github.com/ringtrain/ringtrain/transport"
	"github.com/ringtrain/ringtrain/transport/transporttest"
)

// newCluster makes endpoints on 127.0.0.1 that know each other's addresses.
func newCluster(t testing.TB, sec []byte, ids []string, opt func(*Config)) []*Endpoint {
	t.Helper()
	eps := make([]*Endpoint, len(ids))
	for i, id := range ids {
		cfg := Config{ID: id, Secret: sec, Logger: slog.New(slog.DiscardHandler), HandshakeTimeout: 2 * time.Second}
		if opt != nil {
			opt(&cfg)
		}
		e, err := Listen(cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { e.Close() })
		eps[i] = e
	}
	for _, a := range eps {
		for _, b := range eps {
			if a != b {
				a.AddPeer(b.ID(), b.Addr().String())
			}
		}
	}
	return eps
}

func testSecret() []byte { return []byte("ringtrain test cluster secret") }

// Factory is the transporttest factory for TLS over TCP on 127.0.0.1.
func Factory(t testing.TB, ids []string) []transport.Endpoint {
	eps := newCluster(t, testSecret(), ids, nil)
	out := make([]transport.Endpoint, len(eps))
	for i, e := range eps {
		out[i] = e
	}
	return out
}

func TestConformance(t *testing.T) { transporttest.Run(t, Factory) }

// TestCollectiveConformance runs the whole collective suite over TLS/TCP
// on 127.0.0.1.
func TestCollectiveConformance(t *testing.T) {
	o := collectivetest.Options{MaxPeers: 16, Large: !testing.Short()}
	if raceEnabled {
		// Under -race on 2 shared cores the whole suite with the large
		// buffers ran past 10 min; the large buffers run without -race.
		o.PeerCounts = []int{1, 2, 3, 4, 5, 8, 16}
		o.Large = false
	}
	collectivetest.Run(t, Factory, o)
}

func ctxT(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}
