package membership

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/ringtrain/ringtrain/transport/mem"
)

func syncPair(t *testing.T, chunk int) (*Member, *Member) {
	t.Helper()
	net := mem.NewNetwork()
	var ms []*Member
	for _, id := range []string{"src", "dst"} {
		ep, err := net.Endpoint(id)
		if err != nil {
			t.Fatal(err)
		}
		ms = append(ms, &Member{cfg: Config{ID: id, Endpoint: ep, ChunkBytes: chunk}, log: slog.New(slog.DiscardHandler)})
	}
	return ms[0], ms[1]
}

func TestStateSyncChunks(t *testing.T) {
	const chunk = 1000
	cases := []struct {
		name string
		size int
	}{
		{"empty", 0},
		{"one byte", 1},
		{"exactly one chunk", chunk},
		{"one chunk and a byte", chunk + 1},
		{"many chunks", 37*chunk + 123},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			src, dst := syncPair(t, chunk)
			state := make([]byte, c.size)
			for j := range state {
				state[j] = byte(j*7 + i)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			errc := make(chan error, 1)
			go func() { errc <- src.sendState(ctx, 3, "dst", state, time.Second) }()
			got, err := dst.recvState(ctx, 3, "src", time.Second)
			if err != nil {
				t.Fatal(err)
			}
			if err := <-errc; err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, state) {
				t.Fatalf("received %d bytes differing from the %d sent", len(got), len(state))
			}
		})
	}
}

func TestStateSyncRejects(t *testing.T) {
	cases := []struct {
		name   string
		chunks [][2]uint64 // {total, offset} headers, each with 10 payload bytes
	}{
		{"gap", [][2]uint64{{30, 0}, {30, 20}}},
		{"total changes", [][2]uint64{{30, 0}, {40, 10}}},
		{"past the end", [][2]uint64{{15, 0}, {15, 10}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			src, dst := syncPair(t, 10)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			conn, err := src.cfg.Endpoint.Conn(ctx, "dst")
			if err != nil {
				t.Fatal(err)
			}
			go func() {
				for _, h := range c.chunks {
					b := make([]byte, chunkHeader+10)
					putChunkHeader(b, h[0], h[1])
					if conn.Send(ctx, stateTag(3), b) != nil {
						return
					}
				}
			}()
			if _, err := dst.recvState(ctx, 3, "src", time.Second); !errors.Is(err, ErrWire) {
				t.Fatalf("got %v, want ErrWire", err)
			}
		})
	}
}

func TestConfigSyncHooks(t *testing.T) {
	cases := []struct {
		name     string
		snapshot bool
		restore  bool
		ok       bool
	}{
		{"both (eager)", true, true, true},
		{"neither (deferred)", false, false, true},
		{"only Snapshot", true, false, false},
		{"only Restore", false, true, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			net := mem.NewNetwork()
			ep, err := net.Endpoint("a")
			if err != nil {
				t.Fatal(err)
			}
			cfg := LocalConfig()
			cfg.ID, cfg.Endpoint, cfg.Insecure = "a", ep, true
			if c.snapshot {
				cfg.Snapshot = func() ([]byte, error) { return nil, nil }
			}
			if c.restore {
				cfg.Restore = func([]byte) error { return nil }
			}
			if err := cfg.validate(); (err == nil) != c.ok {
				t.Fatalf("validate: %v, want ok=%v", err, c.ok)
			}
		})
	}
}
