// Package ps is the parameter-server baseline the ring all-reduce is
// measured against: the architecture of distributed TensorFlow 0.8. The
// parameter vector is split into P contiguous shards, shard s living on
// server s; every worker pushes its gradient shard to each server, each
// server sums the n shards it receives and sends the result back to every
// worker (the pull). The servers' links carry n times the traffic of a
// worker's, so the time of one all-reduce grows linearly with n for a fixed
// number of servers.
//
// It runs over transport.Conn, the same seam as ringtrain's collectives, so
// both are measured over the same transports and links.
//
// Invariants:
//   - Workers and servers call AllReduce and Barrier in the same order with
//     the same element count; every call uses its own Tag (epoch, sequence),
//     so the messages of consecutive calls never mix.
//   - Messages are at most ChunkBytes long; a message of unexpected length is
//     an error naming the peer, never a panic.
//   - Every blocking call honours ctx.
package ps

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"sync"
	"unsafe"

	"github.com/ringtrain/ringtrain/transport"
)

// Op is the reduction applied by the servers.
type Op int

const (
	Sum Op = iota // element-wise sum over workers
	Avg           // element-wise mean over workers
)

// DefaultChunkBytes is the message size when Config.ChunkBytes is 0.
const DefaultChunkBytes = 1 << 20

// Config describes one parameter-server job.
type Config struct {
	Workers    []string // worker node IDs, in worker-index order
	Servers    []string // server node IDs; server s holds shard s
	Epoch      uint64   // carried in every message's tag
	ChunkBytes int      // message size (a multiple of 4); 0 means DefaultChunkBytes
}

func (c Config) validate() error {
	if !littleEndian() {
		return errors.New("ps: the wire format is little-endian; this platform is not")
	}
	if len(c.Workers) == 0 || len(c.Servers) == 0 {
		return fmt.Errorf("ps: need at least one worker and one server, got %d and %d", len(c.Workers), len(c.Servers))
	}
	if c.ChunkBytes < 0 || c.ChunkBytes%4 != 0 {
		return fmt.Errorf("ps: ChunkBytes %d is not a non-negative multiple of 4", c.ChunkBytes)
	}
	return nil
}

func (c Config) chunkFloats() int {
	if c.ChunkBytes == 0 {
		return DefaultChunkBytes / 4
	}
	return c.ChunkBytes / 4
}

// Shard returns the element range [lo, hi) of shard s when count elements
// are split over p servers.
func Shard(count, p, s int) (lo, hi int) {
	return s * count / p, (s + 1) * count / p
}

// Worker is one worker's side. Its methods must not be called concurrently.
type Worker struct {
	cfg   Config
	conns []transport.Conn // to each server
	seq   uint64
}

// NewWorker connects ep to every server.
func NewWorker(ctx context.Context, ep transport.Endpoint, cfg Config) (*Worker, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	w := &Worker{cfg: cfg}
	for _, s := range cfg.Servers {
		c, err := ep.Conn(ctx, s)
		if err != nil {
			return nil, fmt.Errorf("ps: worker %s: connect to server %s: %w", ep.ID(), s, err)
		}
		w.conns = append(w.conns, c)
	}
	return w, nil
}

func (w *Worker) next() transport.Tag {
	w.seq++
	return transport.Tag{Epoch: w.cfg.Epoch, Op: w.seq}
}

// AllReduce pushes buf's shards to the servers and replaces buf with the
// reduced result pulled back from them. The op is applied by the servers.
func (w *Worker) AllReduce(ctx context.Context, buf []float32) error {
	tag := w.next()
	p := len(w.conns)
	errs := make([]error, p)
	var wg sync.WaitGroup
	for s, c := range w.conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			lo, hi := Shard(len(buf), p, s)
			shard := buf[lo:hi]
			if err := sendFloats(ctx, c, tag, shard, w.cfg.chunkFloats()); err != nil {
				errs[s] = err
				return
			}
			errs[s] = recvFloats(ctx, c, tag, shard, w.cfg.chunkFloats(), nil)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		abortAll(ctx, w.conns, tag, err)
		return fmt.Errorf("ps: all-reduce %s: %w", tag, err)
	}
	return nil
}

// abortAll tells every peer of a failed operation, so that none of them
// waits for it until its deadline.
func abortAll(ctx context.Context, conns []transport.Conn, tag transport.Tag, reason error) {
	for _, c := range conns {
		_ = c.Abort(ctx, tag, reason)
	}
}

// Barrier returns once every worker has entered it: each worker tells
// server 0, which answers all of them once all have arrived.
func (w *Worker) Barrier(ctx context.Context) error {
	tag := w.next()
	c := w.conns[0]
	if err := c.Send(ctx, tag, nil); err != nil {
		return fmt.Errorf("ps: barrier: %w", err)
	}
	if _, err := c.Recv(ctx, tag, nil); err != nil {
		return fmt.Errorf("ps: barrier: %w", err)
	}
	return nil
}

// Server is one server's side. Its methods must not be called concurrently.
type Server struct {
	cfg   Config
	index int
	conns []transport.Conn // to each worker
	seq   uint64
	acc   []float32
}

// NewServer connects ep, server number index, to every worker.
func NewServer(ctx context.Context, ep transport.Endpoint, cfg Config, index int) (*Server, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if index < 0 || index >= len(cfg.Servers) {
		return nil, fmt.Errorf("ps: server index %d out of range 0..%d", index, len(cfg.Servers)-1)
	}
	s := &Server{cfg: cfg, index: index}
	for _, wk := range cfg.Workers {
		c, err := ep.Conn(ctx, wk)
		if err != nil {
			return nil, fmt.Errorf("ps: server %s: connect to worker %s: %w", ep.ID(), wk, err)
		}
		s.conns = append(s.conns, c)
	}
	return s, nil
}

func (s *Server) next() transport.Tag {
	s.seq++
	return transport.Tag{Epoch: s.cfg.Epoch, Op: s.seq}
}

// AllReduce serves one all-reduce of count elements: it receives this
// server's shard from every worker, reduces, and sends the result to all.
func (s *Server) AllReduce(ctx context.Context, count int, op Op) error {
	tag := s.next()
	lo, hi := Shard(count, len(s.cfg.Servers), s.index)
	if cap(s.acc) < hi-lo {
		s.acc = make([]float32, hi-lo)
	}
	acc := s.acc[:hi-lo]
	clear(acc)
	var mu sync.Mutex // guards acc while workers' chunks are added
	add := func(off int, chunk []float32) {
		mu.Lock()
		dst := acc[off : off+len(chunk)]
		for i, v := range chunk {
			dst[i] += v
		}
		mu.Unlock()
	}
	if err := s.each(func(c transport.Conn) error {
		return recvFloats(ctx, c, tag, acc, s.cfg.chunkFloats(), add)
	}); err != nil {
		abortAll(ctx, s.conns, tag, err)
		return fmt.Errorf("ps: server %d push %s: %w", s.index, tag, err)
	}
	if op == Avg {
		inv := 1 / float32(len(s.conns))
		for i := range acc {
			acc[i] *= inv
		}
	}
	if err := s.each(func(c transport.Conn) error {
		return sendFloats(ctx, c, tag, acc, s.cfg.chunkFloats())
	}); err != nil {
		abortAll(ctx, s.conns, tag, err)
		return fmt.Errorf("ps: server %d pull %s: %w", s.index, tag, err)
	}
	return nil
}

// Barrier takes part in the workers' barrier (server 0 answers it).
func (s *Server) Barrier(ctx context.Context) error {
	tag := s.next()
	if s.index != 0 {
		return nil
	}
	err := s.each(func(c transport.Conn) error {
		_, err := c.Recv(ctx, tag, nil)
		return err
	})
	if err == nil {
		err = s.each(func(c transport.Conn) error { return c.Send(ctx, tag, nil) })
	}
	if err != nil {
		return fmt.Errorf("ps: server barrier %s: %w", tag, err)
	}
	return nil
}

// each runs f for every worker connection concurrently.
func (s *Server) each(f func(c transport.Conn) error) error {
	errs := make([]error, len(s.conns))
	var wg sync.WaitGroup
	for i, c := range s.conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = f(c)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// sendFloats sends v as consecutive messages of at most chunk elements.
func sendFloats(ctx context.Context, c transport.Conn, tag transport.Tag, v []float32, chunk int) error {
	if len(v) == 0 {
		return nil
	}
	for off := 0; off < len(v); off += chunk {
		end := min(off+chunk, len(v))
		if err := c.Send(ctx, tag, floatBytes(v[off:end])); err != nil {
			return err
		}
	}
	return nil
}

// recvFloats receives len(v) elements sent by sendFloats. With add nil they
// are written into v; otherwise each chunk is handed to add with its offset
// (and v is only used for its length).
func recvFloats(ctx context.Context, c transport.Conn, tag transport.Tag, v []float32, chunk int, add func(off int, chunk []float32)) error {
	var scratch []byte
	if add != nil {
		scratch = make([]byte, min(chunk, len(v))*4)
	}
	for off := 0; off < len(v); off += chunk {
		end := min(off+chunk, len(v))
		dst := floatBytes(v[off:end])
		if add != nil {
			dst = scratch[:len(dst)]
		}
		n, err := c.Recv(ctx, tag, dst)
		if err != nil {
			return err
		}
		if n != len(dst) {
			return fmt.Errorf("ps: peer %s sent %d bytes for elements %d..%d, want %d: %w", c.Peer(), n, off, end, len(dst), transport.ErrProtocol)
		}
		if add != nil {
			add(off, bytesFloats(dst))
		}
	}
	return nil
}

// floatBytes views v as its little-endian bytes without copying; the wire
// format is little-endian, which is the memory layout on every platform
// ringtrain runs on (Config.validate refuses others).
func floatBytes(v []float32) []byte {
	if len(v) == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(&v[0])), len(v)*4)
}

func bytesFloats(b []byte) []float32 {
	if len(b) < 4 {
		return nil
	}
	return unsafe.Slice((*float32)(unsafe.Pointer(&b[0])), len(b)/4)
}

// littleEndian reports whether float32 memory layout is the little-endian
// wire format.
func littleEndian() bool {
	var f [1]float32
	f[0] = math.Float32frombits(0x04030201)
	return binary.LittleEndian.Uint32(floatBytes(f[:])) == 0x04030201
}
