package membership

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// sendState streams state to peer in chunks on the epoch's state tag. Each
// chunk carries the total size and its offset, so the receiver checks order
// and bounds without trusting a single length up front. Each chunk must be
// accepted within chunkTimeout.
func (m *Member) sendState(ctx context.Context, epoch uint64, peer string, state []byte, chunkTimeout time.Duration) error {
	c, err := m.cfg.Endpoint.Conn(ctx, peer)
	if err != nil {
		return fmt.Errorf("membership: node %s: state sync to %s (epoch %d): %w", m.cfg.ID, peer, epoch, err)
	}
	buf := make([]byte, chunkHeader+min(m.cfg.ChunkBytes, len(state)))
	total := uint64(len(state))
	for off := 0; ; {
		n := min(m.cfg.ChunkBytes, len(state)-off)
		putChunkHeader(buf, total, uint64(off))
		copy(buf[chunkHeader:], state[off:off+n])
		cctx, cancel := context.WithTimeout(ctx, chunkTimeout)
		err := c.Send(cctx, stateTag(epoch), buf[:chunkHeader+n])
		cancel()
		if err != nil {
			return fmt.Errorf("membership: node %s: state sync to %s (epoch %d, offset %d): %w", m.cfg.ID, peer, epoch, off, err)
		}
		off += n
		if off >= len(state) {
			return nil
		}
	}
}

// recvState receives a state blob from peer. Chunks must arrive in order;
// the buffer grows with the bytes actually received, never with a claimed
// total. Each chunk must arrive within chunkTimeout.
func (m *Member) recvState(ctx context.Context, epoch uint64, peer string, chunkTimeout time.Duration) ([]byte, error) {
	c, err := m.cfg.Endpoint.Conn(ctx, peer)
	if err != nil {
		return nil, fmt.Errorf("membership: node %s: state sync from %s (epoch %d): %w", m.cfg.ID, peer, epoch, err)
	}
	buf := make([]byte, chunkHeader+maxChunk)
	var (
		out     []byte
		want    uint64
		started bool
	)
	for {
		cctx, cancel := context.WithTimeout(ctx, chunkTimeout)
		n, err := c.Recv(cctx, stateTag(epoch), buf)
		cancel()
		if err != nil {
			return nil, fmt.Errorf("membership: node %s: state sync from %s (epoch %d, offset %d): %w", m.cfg.ID, peer, epoch, len(out), err)
		}
		total, off, err := parseChunkHeader(buf[:n])
		if err != nil {
			return nil, fmt.Errorf("membership: node %s: state sync from %s (epoch %d): %w", m.cfg.ID, peer, epoch, err)
		}
		if off != uint64(len(out)) || (started && total != want) {
			return nil, fmt.Errorf("membership: node %s: state sync from %s (epoch %d): %w: chunk at offset %d, expected %d",
				m.cfg.ID, peer, epoch, ErrWire, off, len(out))
		}
		if !started {
			// Reserve at most 64 MiB up front; beyond that the
			// buffer grows only with bytes actually received.
			started, want = true, total
			out = make([]byte, 0, min(total, 64<<20))
		}
		out = append(out, buf[chunkHeader:n]...)
		if uint64(len(out)) == want {
			return out, nil
		}
	}
}

// SendState sends state to every target of a deferred sync order
// (Outcome.Sync) for epoch, concurrently; the caller is the order's source
// and runs it before the epoch's first collective. Each chunk must be
// accepted within ReportTimeout (and ctx). The error names every target
// that failed.
func (m *Member) SendState(ctx context.Context, epoch uint64, targets []string, state []byte) error {
	errs := make([]error, len(targets))
	var wg sync.WaitGroup
	for i, t := range targets {
		if t == m.cfg.ID {
			continue
		}
		wg.Go(func() { errs[i] = m.sendState(ctx, epoch, t, state, m.cfg.ReportTimeout) })
	}
	wg.Wait()
	return errors.Join(errs...)
}

// RecvState receives the state of a deferred sync order (Outcome.Sync) for
// epoch from source; the caller is one of the order's targets and installs
// the state itself before the epoch's first collective. Each chunk must
// arrive within ReportTimeout (and ctx).
func (m *Member) RecvState(ctx context.Context, epoch uint64, source string) ([]byte, error) {
	if source == m.cfg.ID {
		return nil, fmt.Errorf("membership: node %s: state sync from itself (epoch %d)", m.cfg.ID, epoch)
	}
	return m.recvState(ctx, epoch, source, m.cfg.ReportTimeout)
}
