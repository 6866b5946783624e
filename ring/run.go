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
		if err := e.Next.Send(ctx, e.Tag, Bytes(e.Buf[s.Off:s.Off+s.Len])); err != nil {
			return err
		}
	}
	return nil
}

func recvAll(ctx context.Context, e *Exec, ready chan<- struct{}) error {
	for _, r := range e.Sched.Recvs {
		dst := e.Buf[r.Off : r.Off+r.Len]
		into := dst
		if r.Reduce {
			into = e.Scratch[:r.Len]
		}
		n, err := e.Prev.Recv(ctx, e.Tag, Bytes(into))
		if err != nil {
			return err
		}
		if n != 4*r.Len {
			return &transport.OpError{Op: "recv", Peer: e.Prev.Peer(), Tag: e.Tag,
				Err: fmt.Errorf("%w: chunk of %d bytes, want %d", transport.ErrProtocol, n, 4*r.Len)}
		}
		if r.Reduce {
			e.Reduce(dst, into)
		}
		if r.Final && e.Final != nil {
			e.Final(dst)
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
