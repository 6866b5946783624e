package ring

import (
	"context"
	"fmt"
	"sync"
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
	// Scratch receives chunks before they are reduced; at least as long as
	// the longest reducing receive.
	Scratch []float32
	// Wire, when set, is the encoding of elements on the wire (nil: the
	// float32 bytes themselves). Chunks are encoded from Buf when sent and
	// decoded to float32 when received, so every reduction runs in float32;
	// a chunk's final value is rounded to the wire type once (after Final),
	// in Buf too, so the owner keeps exactly what the others decode.
	Wire *Codec
	// SendBuf and RecvBuf hold encoded chunks when Wire is set; each at
	// least Wire.Size times the longest chunk.
	SendBuf, RecvBuf []byte
}

// Codec is an element encoding on the wire other than float32's own bytes.
// Decode(Encode(x)) must be exact for every x that Round produces, so that
// values forwarded in the all-gather reach every rank unchanged.
type Codec struct {
	Size   int // bytes per element
	Encode func(dst []byte, src []float32)
	Decode func(dst []float32, src []byte)
	Round  func(x []float32) // x = Decode(Encode(x)), in place
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
	ready := make(chan struct{}, len(s.Recvs))
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

func sendAll(ctx context.Context, e *Exec, ready <-chan struct{}) error {
	done := 0 // receives known to be complete
	for _, s := range e.Sched.Sends {
		for done <= s.After {
			select {
			case <-ready:
				done++
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		p := Bytes(e.Buf[s.Off : s.Off+s.Len])
		if e.Wire != nil {
			p = e.SendBuf[:s.Len*e.Wire.Size]
			e.Wire.Encode(p, e.Buf[s.Off:s.Off+s.Len])
		}
		if err := e.Next.Send(ctx, e.Tag, p); err != nil {
			return err
		}
	}
	return nil
}

func recvAll(ctx context.Context, e *Exec, ready chan<- struct{}) error {
	size := 4
	if e.Wire != nil {
		size = e.Wire.Size
	}
	for _, r := range e.Sched.Recvs {
		dst := e.Buf[r.Off : r.Off+r.Len]
		var into []byte
		switch {
		case e.Wire != nil:
			into = e.RecvBuf[:size*r.Len]
		case r.Reduce:
			into = Bytes(e.Scratch[:r.Len])
		default:
			into = Bytes(dst)
		}
		n, err := e.Prev.Recv(ctx, e.Tag, into)
		if err != nil {
			return err
		}
		if n != size*r.Len {
			return &transport.OpError{Op: "recv", Peer: e.Prev.Peer(), Tag: e.Tag,
				Err: fmt.Errorf("%w: chunk of %d bytes, want %d", transport.ErrProtocol, n, size*r.Len)}
		}
		switch {
		case e.Wire != nil && r.Reduce:
			e.Wire.Decode(e.Scratch[:r.Len], into)
			e.Reduce(dst, e.Scratch[:r.Len])
		case e.Wire != nil:
			e.Wire.Decode(dst, into)
		case r.Reduce:
			e.Reduce(dst, e.Scratch[:r.Len])
		}
		if r.Final {
			if e.Final != nil {
				e.Final(dst)
			}
			if e.Wire != nil {
				e.Wire.Round(dst)
			}
		}
		ready <- struct{}{} // never blocks: capacity is len(Recvs)
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
