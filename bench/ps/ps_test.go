package ps

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/ringtrain/ringtrain/transport"
	"github.com/ringtrain/ringtrain/transport/mem"
)

// job starts n workers and p servers on one in-memory network.
func job(t *testing.T, n, p, chunkBytes int) ([]*Worker, []*Server) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	net := mem.NewNetwork()
	cfg := Config{Epoch: 3, ChunkBytes: chunkBytes}
	for i := 0; i < n; i++ {
		cfg.Workers = append(cfg.Workers, fmt.Sprintf("w%d", i))
	}
	for i := 0; i < p; i++ {
		cfg.Servers = append(cfg.Servers, fmt.Sprintf("s%d", i))
	}
	endpoint := func(id string) transport.Endpoint {
		ep, err := net.Endpoint(id)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ep.Close() })
		return ep
	}
	eps := map[string]transport.Endpoint{}
	for _, id := range append(append([]string(nil), cfg.Workers...), cfg.Servers...) {
		eps[id] = endpoint(id)
	}
	var ws []*Worker
	var ss []*Server
	for _, id := range cfg.Workers {
		w, err := NewWorker(ctx, eps[id], cfg)
		if err != nil {
			t.Fatal(err)
		}
		ws = append(ws, w)
	}
	for i, id := range cfg.Servers {
		s, err := NewServer(ctx, eps[id], cfg, i)
		if err != nil {
			t.Fatal(err)
		}
		ss = append(ss, s)
	}
	return ws, ss
}

// parallel runs f for every worker and server concurrently.
func parallel(ws []*Worker, ss []*Server, fw func(i int, w *Worker) error, fs func(s *Server) error) error {
	errs := make([]error, len(ws)+len(ss))
	var wg sync.WaitGroup
	for i, w := range ws {
		wg.Add(1)
		go func() { defer wg.Done(); errs[i] = fw(i, w) }()
	}
	for i, s := range ss {
		wg.Add(1)
		go func() { defer wg.Done(); errs[len(ws)+i] = fs(s) }()
	}
	wg.Wait()
	return errors.Join(errs...)
}

func TestAllReduceExactSums(t *testing.T) {
	cases := []struct {
		name         string
		workers, svr int
		count        int
		chunkBytes   int
		op           Op
	}{
		{"one worker one server", 1, 1, 10, 0, Sum},
		{"4 workers 1 server", 4, 1, 1000, 0, Sum},
		{"4 workers 3 servers uneven shards", 4, 3, 1001, 0, Sum},
		{"more servers than elements", 3, 5, 2, 0, Sum},
		{"empty tensor", 3, 2, 0, 0, Sum},
		{"small chunks", 5, 2, 777, 64, Sum},
		{"8 workers avg", 8, 2, 4096, 1024, Avg},
		{"16 workers 4 servers", 16, 4, 1 << 14, 4096, Sum},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ws, ss := job(t, c.workers, c.svr, c.chunkBytes)
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			bufs := make([][]float32, c.workers)
			// Two rounds: the second checks that tags and the
			// server's accumulator are reset between calls.
			for round := 0; round < 2; round++ {
				for i := range bufs {
					bufs[i] = make([]float32, c.count)
					for j := range bufs[i] {
						bufs[i][j] = float32((i+1)*(round+1) + j%7)
					}
				}
				err := parallel(ws, ss,
					func(i int, w *Worker) error {
						if err := w.Barrier(ctx); err != nil {
							return err
						}
						return w.AllReduce(ctx, bufs[i])
					},
					func(s *Server) error {
						if err := s.Barrier(ctx); err != nil {
							return err
						}
						return s.AllReduce(ctx, c.count, c.op)
					})
				if err != nil {
					t.Fatal(err)
				}
				n := c.workers
				for i := range bufs {
					for j, got := range bufs[i] {
						// sum over workers k of (k+1)(round+1) + j%7
						want := float32(n*(n+1)/2*(round+1) + n*(j%7))
						if c.op == Avg {
							want /= float32(n)
						}
						if got != want {
							t.Fatalf("round %d worker %d elem %d = %v, want %v", round, i, j, got, want)
						}
					}
				}
			}
		})
	}
}

func TestShardCoversAll(t *testing.T) {
	for _, c := range []struct{ count, p int }{{0, 1}, {10, 3}, {2, 5}, {1 << 20, 7}} {
		next := 0
		for s := 0; s < c.p; s++ {
			lo, hi := Shard(c.count, c.p, s)
			if lo != next || hi < lo {
				t.Fatalf("count %d p %d shard %d = [%d,%d), want start %d", c.count, c.p, s, lo, hi, next)
			}
			next = hi
		}
		if next != c.count {
			t.Fatalf("count %d p %d: shards end at %d", c.count, c.p, next)
		}
	}
}

func TestWrongLengthIsProtocolError(t *testing.T) {
	ws, ss := job(t, 1, 1, 0)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	// The worker sends 3 floats but the server expects 4.
	err := parallel(ws, ss,
		func(_ int, w *Worker) error { return w.AllReduce(ctx, make([]float32, 3)) },
		func(s *Server) error { return s.AllReduce(ctx, 4, Sum) })
	if !errors.Is(err, transport.ErrProtocol) && !errors.Is(err, transport.ErrMessageSize) {
		t.Fatalf("err = %v, want a protocol or message-size error", err)
	}
}

func TestConfigValidation(t *testing.T) {
	cases := []struct {
		name string
		cfg  Config
	}{
		{"no workers", Config{Servers: []string{"s"}}},
		{"no servers", Config{Workers: []string{"w"}}},
		{"odd chunk", Config{Workers: []string{"w"}, Servers: []string{"s"}, ChunkBytes: 6}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if err := c.cfg.validate(); err == nil {
				t.Fatal("accepted")
			}
		})
	}
}
