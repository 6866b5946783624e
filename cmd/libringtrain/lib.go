package main

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"runtime/debug"
	"sync"
	"time"
	"unsafe"

	"github.com/ringtrain/ringtrain/collective"
	"github.com/ringtrain/ringtrain/node"
)

// Return codes of every rt_* call (the C constants RT_OK…).
const (
	codeOK      = 0
	codeError   = 1 // anything else: see rt_last_error
	codeInvalid = 2 // bad argument (dtype, op, size, handle, state): the node is unaffected
	codeComm    = 3 // a collective or state transfer failed: report the step as failed at the next boundary
	codeClosed  = 4 // the node is closed
)

// errInvalid marks argument errors; errComm marks failed communication.
var (
	errInvalid = errors.New("invalid argument")
	errComm    = errors.New("communication failed")
	errClosed  = errors.New("closed")
)

func codeOf(err error) int32 {
	switch {
	case err == nil:
		return codeOK
	case errors.Is(err, errInvalid):
		return codeInvalid
	case errors.Is(err, errClosed):
		return codeClosed
	case errors.Is(err, errComm):
		return codeComm
	}
	return codeError
}

// library is the state of one loaded copy of libringtrain: the handle
// table C callers index with integers, and each calling thread's last error.
type library struct {
	ctx    context.Context
	cancel context.CancelFunc

	mu      sync.Mutex
	next    int64
	handles map[int64]any // *session, *request, *bucketer

	errMu sync.Mutex
	errs  map[int]string // OS thread ID → last error message
}

func newLibrary() *library {
	ctx, cancel := context.WithCancel(context.Background())
	return &library{ctx: ctx, cancel: cancel, next: 1, handles: map[int64]any{}, errs: map[int]string{}}
}

func (l *library) put(v any) int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	h := l.next
	l.next++
	l.handles[h] = v
	return h
}

func get[T any](l *library, h int64, what string) (T, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	v, ok := l.handles[h].(T)
	if !ok {
		var zero T
		return zero, fmt.Errorf("%w: handle %d is not an open %s", errInvalid, h, what)
	}
	return v, nil
}

func (l *library) drop(h int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.handles, h)
}

// call runs one export: it recovers any panic into an error (nothing may
// crash the host process), records the error for rt_last_error on this
// thread, and returns the code.
func (l *library) call(op string, f func() error) (code int32) {
	defer func() {
		if r := recover(); r != nil {
			err := fmt.Errorf("ringtrain: %s: internal error (please report): %v\n%s", op, r, debug.Stack())
			l.setErr(err.Error())
			code = codeError
		}
	}()
	err := f()
	if err != nil {
		l.setErr(fmt.Sprintf("ringtrain: %s: %v", op, err))
	} else {
		l.setErr("")
	}
	return codeOf(err)
}

// request is an asynchronous all-reduce in flight.
type request struct {
	done chan struct{}
	err  error
}

// buffer views a C buffer as float32 elements: fp32 buffers in place,
// others through an fp32 scratch (widened now, narrowed back by finish).
type buffer struct {
	f32    []float32
	dt     dtype
	finish func()
}

func viewBuffer(p unsafe.Pointer, count int64, dt dtype, op string) (buffer, error) {
	switch {
	case !dt.valid():
		return buffer{}, fmt.Errorf("%w: %s: unsupported dtype %d (want fp32, bf16 or fp16)", errInvalid, op, int32(dt))
	case count < 0 || count > 1<<40:
		return buffer{}, fmt.Errorf("%w: %s: element count %d", errInvalid, op, count)
	case count > 0 && p == nil:
		return buffer{}, fmt.Errorf("%w: %s: null buffer with %d elements", errInvalid, op, count)
	}
	if count == 0 {
		return buffer{dt: dt, finish: func() {}}, nil
	}
	if dt == fp32 {
		// In place: the slice aliases C memory (never Go memory), which
		// the host keeps alive until the call, or rt_wait, returns.
		return buffer{f32: unsafe.Slice((*float32)(p), count), dt: dt, finish: func() {}}, nil
	}
	b := buffer{dt: dt, f32: make([]float32, count)}
	widen(b.f32, p, dt)
	b.finish = func() { narrow(p, b.f32, dt) }
	return b, nil
}

func parseOp(op int32) (collective.Op, error) {
	if op < int32(collective.Sum) || op > int32(collective.Min) {
		return 0, fmt.Errorf("%w: unknown reduction %d (want 0 sum, 1 avg, 2 max, 3 min)", errInvalid, op)
	}
	return collective.Op(op), nil
}

// comm marks a collective's failure: the error names the peer, epoch and
// operation (collective wraps them), and tells the host what to do.
func comm(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, collective.ErrPlanMismatch):
		// The members' DistributedOptimizers differ: a retry in a new
		// epoch would fail the same way, so it is the caller's error.
		return fmt.Errorf("%w: %w", errInvalid, err)
	}
	return fmt.Errorf("%w: %w", errComm, err)
}

// allReduce reduces a buffer in place. fp16/bf16 buffers are widened into
// an fp32 scratch, reduced, and narrowed back: once each way.
func (l *library) allReduce(h int64, p unsafe.Pointer, count int64, dt dtype, op int32) error {
	s, err := get[*session](l, h, "node")
	if err != nil {
		return err
	}
	o, err := parseOp(op)
	if err != nil {
		return err
	}
	b, err := viewBuffer(p, count, dt, "all-reduce")
	if err != nil {
		return err
	}
	g, ctx, err := s.group("all-reduce")
	if err != nil {
		return err
	}
	if err := s.comm(ctx, g.AllReduceWire(ctx, b.f32, o, s.wireFor(dt))); err != nil {
		return err
	}
	b.finish()
	return nil
}

// allReduceAsync starts an all-reduce; it takes its place in the group's
// operation order now. The buffer must stay valid until rt_wait returns.
func (l *library) allReduceAsync(h int64, p unsafe.Pointer, count int64, dt dtype, op int32) (int64, error) {
	s, err := get[*session](l, h, "node")
	if err != nil {
		return 0, err
	}
	o, err := parseOp(op)
	if err != nil {
		return 0, err
	}
	b, err := viewBuffer(p, count, dt, "all-reduce")
	if err != nil {
		return 0, err
	}
	g, ctx, err := s.group("all-reduce")
	if err != nil {
		return 0, err
	}
	gh := g.AllReduceWireAsync(ctx, b.f32, o, s.wireFor(dt))
	r := &request{done: make(chan struct{})}
	go func() {
		defer close(r.done)
		if r.err = s.comm(ctx, gh.Wait(ctx)); r.err == nil {
			b.finish()
		}
	}()
	return l.put(r), nil
}

// wait blocks for a request and frees its handle.
func (l *library) wait(h int64) error {
	r, err := get[*request](l, h, "request")
	if err != nil {
		return err
	}
	<-r.done // every operation ends by its deadline
	l.drop(h)
	return r.err
}

// test reports whether a request is done (then rt_wait returns at once).
func (l *library) test(h int64) (bool, error) {
	r, err := get[*request](l, h, "request")
	if err != nil {
		return false, err
	}
	select {
	case <-r.done:
		return true, nil
	default:
		return false, nil
	}
}

func (l *library) broadcast(h int64, p unsafe.Pointer, count int64, dt dtype, root int32) error {
	s, err := get[*session](l, h, "node")
	if err != nil {
		return err
	}
	if !dt.valid() {
		return fmt.Errorf("%w: broadcast: unsupported dtype %d", errInvalid, dt)
	}
	// Broadcast moves bits: any dtype travels as float32 words (an odd
	// 16-bit tail in the last word's upper half, which is the host's own
	// memory only if the byte count is a multiple of 4, so copy).
	n := count * int64(dt.size())
	words, tail := n/4, n%4
	buf, err := viewBuffer(p, words, fp32, "broadcast")
	if err != nil {
		return err
	}
	g, ctx, err := s.group("broadcast")
	if err != nil {
		return err
	}
	if root < 0 || int(root) >= g.Size() {
		return fmt.Errorf("%w: broadcast: root %d not in 0..%d", errInvalid, root, g.Size()-1)
	}
	data := buf.f32
	if tail != 0 {
		data = make([]float32, words+1)
		copy(data, buf.f32)
		copy(unsafe.Slice((*byte)(unsafe.Pointer(&data[words])), 4), unsafe.Slice((*byte)(unsafe.Add(p, words*4)), tail))
	}
	if err := s.comm(ctx, g.Broadcast(ctx, data, int(root))); err != nil {
		return err
	}
	if tail != 0 {
		copy(unsafe.Slice((*byte)(p), n), unsafe.Slice((*byte)(unsafe.Pointer(&data[0])), n))
	}
	return nil
}

// allGather concatenates every member's count elements into recv, which
// holds size·count elements.
func (l *library) allGather(h int64, send unsafe.Pointer, count int64, dt dtype, recv unsafe.Pointer, recvCount int64) error {
	s, err := get[*session](l, h, "node")
	if err != nil {
		return err
	}
	if dt != fp32 {
		return fmt.Errorf("%w: all-gather: only fp32 buffers are supported, got %s", errInvalid, dt)
	}
	sb, err := viewBuffer(send, count, fp32, "all-gather")
	if err != nil {
		return err
	}
	rb, err := viewBuffer(recv, recvCount, fp32, "all-gather")
	if err != nil {
		return err
	}
	g, ctx, err := s.group("all-gather")
	if err != nil {
		return err
	}
	if recvCount != int64(g.Size())*count {
		return fmt.Errorf("%w: all-gather: receive buffer holds %d elements, want %d·%d", errInvalid, recvCount, g.Size(), count)
	}
	return s.comm(ctx, g.AllGather(ctx, sb.f32, rb.f32))
}

func (l *library) barrier(h int64) error {
	s, err := get[*session](l, h, "node")
	if err != nil {
		return err
	}
	g, ctx, err := s.group("barrier")
	if err != nil {
		return err
	}
	return s.comm(ctx, g.Barrier(ctx))
}

func (l *library) boundary(h int64, done uint64, failed bool, errMsg string, leave bool) (boundary, error) {
	s, err := get[*session](l, h, "node")
	if err != nil {
		return boundary{}, err
	}
	st := node.Step{Done: done, Leave: leave}
	if failed {
		st.Err = errors.New(errMsg)
	}
	b, err := s.boundaryCall(st)
	if err != nil && s.ctx.Err() != nil {
		return b, fmt.Errorf("%w: %w", errClosed, err)
	}
	return b, comm(err)
}

func (l *library) init(js []byte) (int64, error) {
	cfg, err := parseSettings(js)
	if err != nil {
		return 0, fmt.Errorf("%w: %w", errInvalid, err)
	}
	if cfg.GoThreads > 0 {
		runtime.GOMAXPROCS(cfg.GoThreads)
	}
	// Start returns once the node joined the gossip; the join has its own
	// timeout, this one only bounds a stuck start.
	ctx, cancel := context.WithTimeout(l.ctx, 2*time.Minute)
	defer cancel()
	s, err := startSession(ctx, l.ctx, cfg)
	if err != nil {
		return 0, err
	}
	return l.put(s), nil
}

func (l *library) close(h int64) error {
	s, err := get[*session](l, h, "node")
	if err != nil {
		return err
	}
	l.drop(h)
	return s.close()
}

// maxErrThreads bounds the error table; threads that exit leave entries
// behind, so beyond it the table starts afresh.
const maxErrThreads = 4096

func (l *library) setErr(msg string) {
	l.errMu.Lock()
	defer l.errMu.Unlock()
	id := threadID()
	if msg == "" {
		delete(l.errs, id)
		return
	}
	if len(l.errs) >= maxErrThreads {
		clear(l.errs)
	}
	l.errs[id] = msg
}

func (l *library) lastErr() string {
	l.errMu.Lock()
	defer l.errMu.Unlock()
	return l.errs[threadID()]
}

func errInvalidf(format string, a ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{errInvalid}, a...)...)
}
