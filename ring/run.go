package ring

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/ringtrain/ringtrain/transport"
)

// abortTimeout bounds how long a failing rank spends telling its neighbours.
const abortTimeout = 2 * time.Second

// Exec is one execution of a schedule by one rank.
type Exec struct {
	Prev, Next transport.Conn // neighbours; may be nil when the schedule has no traffic that way
	Tag        transport.Tag
	Buf        []float32
	Sched      *Schedule
	// Reduce combines a received chunk into dst (dst op= src); needed when
	// the schedule has reducing receives.
	Reduce func(dst, src []float32)
	// Final is applied to a chunk after its final reduction (may be nil).
	Final func(dst []float32)
	// SumDivisor > 0 states that Reduce is Sum and Final divides by
	// SumDivisor (1: Final does nothing). With a Wire that has fused
	// kernels, reducing receives then decode, add, divide and encode in one
	// pass (see Codec); the results are bitwise those of Reduce and Final.
	SumDivisor float32
	// Scratch receives chunks before they are reduced; at least as long as
	// the longest reducing receive.
	Scratch []float32
	// Wire, when set, is the encoding of elements on the wire (nil: the
	// float32 bytes themselves). Every reduction runs in float32 on decoded
	// values; a chunk's final value is rounded to the wire type once (after
	// Final), in Buf too, so the owner keeps exactly what the others decode.
	// A received chunk that the schedule forwards (Recv.Forward) travels on
	// as the bytes the receive produced (the encoded partial sum, the
	// rounded result, or the all-gather's bytes as received) instead of
	// being encoded from Buf again; a reducing receive that is forwarded
	// and not final then leaves its partial sum only in those bytes (Buf's
	// range keeps its input until the all-gather overwrites it). When the
	// sender lags too far for those bytes to be held (heldLimit), such a
	// partial sum is parked instead: its encoded bytes are copied to the
	// start of its own range of Buf, which nothing reads as float32 before
	// the all-gather overwrites it, and sent from there. An all-gather
	// chunk that is forwarded and not held is parked likewise when the codec
	// can Expand and its codes take at most half the range: its bytes are
	// copied to the range's upper end, sent from there, and widened into
	// the range in place after the send. A forwarded final chunk that is
	// not held is encoded from Buf again, with Codec.Exact when set (Buf's
	// range holds rounded values).
	Wire *Codec
	// Bufs lends the buffers encoded chunks occupy while in flight when Wire
	// is set (nil: each is allocated).
	Bufs BufPool

	held atomic.Int32 // received chunks handed to the sender, not yet sent
}

// Codec is an element encoding on the wire other than float32's own bytes.
// Decode(Encode(x)) must be exact for every x that Round produces, so that
// values forwarded in the all-gather reach every rank unchanged.
type Codec struct {
	Size   int // bytes per element
	Encode func(dst []byte, src []float32)
	Decode func(dst []float32, src []byte)
	Round  func(x []float32) // x = Decode(Encode(x)), in place
	// AddEncode and AddRound, when both set, are the fused hops of a sum
	// (used when Exec.SumDivisor > 0): AddEncode sets w = Encode(acc +
	// Decode(w)) leaving acc alone; AddRound sets acc = Round((acc +
	// Decode(w)) / div) and w = Encode(acc).
	AddEncode func(w []byte, acc []float32)
	AddRound  func(acc []float32, w []byte, div float32)
	// Exact, when set, is Encode for values Decode or Round produced,
	// which it may encode without rounding (nil: Encode encodes them).
	Exact func(dst []byte, src []float32)
	// Expand, when set, widens in place the len(x) codes at the upper end
	// of x's memory (its last Size·len(x) bytes; Size ≤ 2) into x, as
	// Decode would from a copy.
	Expand func(x []float32)
}

// BufPool lends byte buffers; it must be safe for concurrent use.
type BufPool interface {
	// Get returns a buffer of length n.
	Get(n int) *[]byte
	// Put takes back a buffer Get returned.
	Put(*[]byte)
}

func (e *Exec) getBuf(n int) *[]byte {
	if e.Bufs != nil {
		return e.Bufs.Get(n)
	}
	b := make([]byte, n)
	return &b
}

func (e *Exec) putBuf(b *[]byte) {
	if e.Bufs != nil && b != nil {
		e.Bufs.Put(b)
	}
}

// parks reports whether receive r, when its bytes are not held for the
// sender, is parked in Buf (see Exec.Wire): a forwarded partial sum whose
// code fits in its float32 range.
func (e *Exec) parks(r Recv) bool {
	return r.Forward && r.Reduce && !r.Final && e.Wire.Size <= 4
}

// parksHigh reports whether all-gather receive r, when its bytes are not
// held for the sender, is parked at the upper end of its range of Buf and
// widened there after its send (see Exec.Wire).
func (e *Exec) parksHigh(r Recv) bool {
	return r.Forward && !r.Reduce && !r.Final && e.Wire.Expand != nil && e.Wire.Size <= 2
}

// exact reports whether receive r leaves in Buf, on the range the send
// forwarding it reads, values that Decode or Round produced.
func (e *Exec) exact(r Recv) bool { return r.Forward && (r.Final || !r.Reduce) }

// high is the upper end of f's bytes that n bytes of codes parked there
// occupy.
func high(f []float32, n int) []byte {
	b := Bytes(f)
	return b[len(b)-n:]
}

// fused reports whether reducing receives use the codec's fused kernels.
func (e *Exec) fused() bool {
	return e.Wire != nil && e.SumDivisor > 0 && e.Wire.AddEncode != nil && e.Wire.AddRound != nil
}

// Run executes e: a sender goroutine walks Sends while this goroutine walks
// Recvs, so sending, receiving and reducing overlap. On any failure Run
// cancels the other half, aborts the operation's tag toward both neighbours
// (so the failure travels around the ring instead of leaving them waiting)
// and returns the first error. Run returns only after its sender has exited.
func Run(ctx context.Context, e *Exec) error {
	s := e.Sched
	if len(s.Sends) == 0 && len(s.Recvs) == 0 {
		return nil
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		once     sync.Once
		firstErr error
	)
	fail := func(err error) {
		once.Do(func() { firstErr = err; cancel() })
	}
	// One entry per completed receive, in order: the chunk's encoded bytes
	// when the schedule forwards it (Wire set), else nil.
	ready := make(chan *[]byte, len(s.Recvs))
	var wg sync.WaitGroup
	if len(s.Sends) > 0 {
		wg.Go(func() {
			if err := sendAll(ctx, e, ready); err != nil {
				fail(err)
			}
		})
	}
	if err := recvAll(ctx, e, ready); err != nil {
		fail(err)
	}
	wg.Wait()
	if firstErr != nil {
		e.abort(ctx, firstErr)
	}
	return firstErr
}

func (e *Exec) abort(ctx context.Context, cause error) {
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), abortTimeout)
	defer cancel()
	if e.Prev != nil {
		_ = e.Prev.Abort(actx, e.Tag, cause) // best effort; the cause is what we report
	}
	if e.Next != nil && e.Next != e.Prev {
		_ = e.Next.Abort(actx, e.Tag, cause)
	}
}

func sendAll(ctx context.Context, e *Exec, ready <-chan *[]byte) error {
	var own *[]byte // the buffer chunks encoded from Buf go out of
	// pending holds, by receive index, the encoded bytes of completed
	// receives that a send still has to forward: the step boundary (Sync)
	// lets receives complete before the sends that carry them.
	pending := make(map[int]*[]byte)
	defer func() {
		e.putBuf(own)
		for _, b := range pending {
			e.putBuf(b)
			e.held.Add(-1)
		}
	}()
	done := 0 // receives known to be complete
	for _, s := range e.Sched.Sends {
		for done <= s.Sync { // Sync ≥ After: the data, and the step boundary
			select {
			case b := <-ready:
				if b != nil {
					pending[done] = b
				}
				done++
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		fwd := pending[s.After] // receive s.After's bytes, if forwarded
		delete(pending, s.After)
		p := Bytes(e.Buf[s.Off : s.Off+s.Len])
		expand := false // widen the range's parked codes after the send
		if e.Wire != nil {
			n := s.Len * e.Wire.Size
			var from *Recv // the receive whose chunk this send forwards
			if s.After >= 0 {
				from = &e.Sched.Recvs[s.After]
			}
			switch {
			case fwd != nil:
				p = (*fwd)[:n]
			case from != nil && e.parks(*from):
				p = p[:n]
			case from != nil && e.parksHigh(*from):
				p, expand = high(e.Buf[s.Off:s.Off+s.Len], n), true
			default:
				if own == nil || cap(*own) < n {
					e.putBuf(own)
					own = e.getBuf(n)
				}
				p = (*own)[:n]
				enc := e.Wire.Encode
				if from != nil && e.exact(*from) && e.Wire.Exact != nil {
					enc = e.Wire.Exact
				}
				enc(p, e.Buf[s.Off:s.Off+s.Len])
			}
		}
		err := e.Next.Send(ctx, e.Tag, p)
		if expand && err == nil {
			e.Wire.Expand(e.Buf[s.Off : s.Off+s.Len])
		}
		if fwd != nil {
			e.putBuf(fwd)
			e.held.Add(-1)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func recvAll(ctx context.Context, e *Exec, ready chan<- *[]byte) error {
	if e.Wire != nil {
		return recvWire(ctx, e, ready)
	}
	for _, r := range e.Sched.Recvs {
		dst := e.Buf[r.Off : r.Off+r.Len]
		into := Bytes(dst)
		if r.Reduce {
			into = Bytes(e.Scratch[:r.Len])
		}
		if err := e.recv(ctx, into, 4*r.Len); err != nil {
			return err
		}
		if r.Reduce {
			e.Reduce(dst, e.Scratch[:r.Len])
		}
		if r.Final && e.Final != nil {
			e.Final(dst)
		}
		ready <- nil // never blocks: capacity is len(Recvs)
	}
	return nil
}

// maxForward bounds the received chunks an operation holds for its
// sender: when the sender lags further behind (its link is slower than the
// one in), a receive leaves its value in Buf for the sender to encode,
// as without forwarding, instead of holding more buffers.
const maxForward = 4

// maxBoundary bounds how many more chunks than maxForward an operation
// holds for the step boundary (a step's sends wait for the previous step,
// whose chunks they forward): enough for the steps of shaped-link
// all-reduces (16 MiB over 4 peers in 256 KiB chunks has 16 a step), while
// a large buffer's long steps fall back to encoding from Buf instead of
// holding a whole segment's wire bytes.
const maxBoundary = 16

// heldLimit is how many received chunks e may hold for its sender: the
// receives a send may wait for beyond its own (the step boundary, at most
// maxBoundary) plus maxForward of lag.
func (e *Exec) heldLimit() int32 {
	extra := 0
	for _, s := range e.Sched.Sends {
		extra = max(extra, s.Sync-s.After)
	}
	return int32(min(extra, maxBoundary) + maxForward)
}

// recvWire is recvAll over a wire codec: each chunk arrives in a buffer of
// its own, is decoded (and reduced) from it and, when the schedule forwards
// it, leaves in it to the sender holding what goes on, or is parked in Buf
// (see Exec.Wire).
func recvWire(ctx context.Context, e *Exec, ready chan<- *[]byte) error {
	c, fused := e.Wire, e.fused()
	limit := e.heldLimit()
	for _, r := range e.Sched.Recvs {
		dst := e.Buf[r.Off : r.Off+r.Len]
		n := c.Size * r.Len
		bp := e.getBuf(n)
		w := (*bp)[:n]
		if err := e.recv(ctx, w, n); err != nil {
			e.putBuf(bp)
			return err
		}
		fwd := r.Forward && e.held.Load() < limit
		park := !fwd && e.parks(r)
		parkHigh := !fwd && e.parksHigh(r)
		switch {
		case r.Reduce && fused && r.Final:
			c.AddRound(dst, w, e.SumDivisor)
		case r.Reduce && fused && (fwd || park):
			c.AddEncode(w, dst)
		default:
			switch {
			case r.Reduce:
				c.Decode(e.Scratch[:r.Len], w)
				e.Reduce(dst, e.Scratch[:r.Len])
			case parkHigh:
				copy(high(dst, n), w) // the sender sends and widens it
			default:
				c.Decode(dst, w)
			}
			if r.Final {
				if e.Final != nil {
					e.Final(dst)
				}
				c.Round(dst)
			}
			if (fwd || park) && (r.Reduce || r.Final) {
				c.Encode(w, dst) // what goes on is the new value
			}
		}
		if park {
			copy(Bytes(dst), w) // the sender sends it from there
		}
		if fwd {
			e.held.Add(1)
		} else {
			e.putBuf(bp)
			bp = nil
		}
		ready <- bp // never blocks: capacity is len(Recvs)
	}
	return nil
}

// recv receives one chunk of want bytes into p.
func (e *Exec) recv(ctx context.Context, p []byte, want int) error {
	n, err := e.Prev.Recv(ctx, e.Tag, p)
	if err != nil {
		return err
	}
	if n != want {
		return &transport.OpError{Op: "recv", Peer: e.Prev.Peer(), Tag: e.Tag,
			Err: fmt.Errorf("%w: chunk of %d bytes, want %d", transport.ErrProtocol, n, want)}
	}
	return nil
}

// Bytes views f as its in-memory bytes, which are the little-endian wire
// encoding on every supported (little-endian) host; see endian_check.go.
func Bytes(f []float32) []byte {
	if len(f) == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(f))), 4*len(f))
}
