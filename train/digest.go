package train

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"math"
)

// digestScratch holds the buffers of a digest check, reused across checks.
type digestScratch struct {
	bytes []byte
	send  [4]float32
	recv  []float32
}

// Digest is the first 8 bytes (big endian) of the SHA-256 of the parameter
// arena's little-endian bytes: peers holding bitwise-identical parameters
// have equal digests.
func (t *Trainer) Digest() uint64 {
	const block = 16 << 10 // floats hashed per chunk
	p := t.cfg.Model.Params()
	if cap(t.digest.bytes) < 4*block {
		t.digest.bytes = make([]byte, 4*block)
	}
	h := sha256.New()
	for i := 0; i < len(p); i += block {
		j := min(i+block, len(p))
		b := t.digest.bytes[:4*(j-i)]
		for k, v := range p[i:j] {
			binary.LittleEndian.PutUint32(b[4*k:], math.Float32bits(v))
		}
		h.Write(b)
	}
	var sum [sha256.Size]byte
	h.Sum(sum[:0])
	return binary.BigEndian.Uint64(sum[:8])
}

// DivergenceError reports peers whose parameters differ from the majority.
type DivergenceError struct {
	Step     uint64
	Expected uint64 // the digest most peers hold
	Peers    []DivergentPeer
}

// DivergentPeer names one peer whose digest differs.
type DivergentPeer struct {
	Rank   int
	Member string
	Digest uint64
}

func (e *DivergenceError) Error() string {
	s := fmt.Sprintf("train: parameters diverged at step %d: majority digest %016x;", e.Step, e.Expected)
	for _, p := range e.Peers {
		s += fmt.Sprintf(" rank %d (member %s) has %016x;", p.Rank, p.Member, p.Digest)
	}
	return s[:len(s)-1]
}

// CheckDigest all-gathers every peer's parameter digest and returns a
// *DivergenceError naming each peer (rank and member ID) whose digest
// differs from the most common one (ties go to the lowest rank's digest).
// Every peer computes the same verdict.
func (t *Trainer) CheckDigest(ctx context.Context, comm Comm) error {
	d := t.Digest()
	// Four 16-bit pieces: integers below 2^24 travel exactly as float32.
	for i := range t.digest.send {
		t.digest.send[i] = float32(uint16(d >> (16 * (3 - i))))
	}
	size := comm.Size()
	if cap(t.digest.recv) < 4*size {
		t.digest.recv = make([]float32, 4*size)
	}
	recv := t.digest.recv[:4*size]
	if err := comm.AllGather(ctx, t.digest.send[:], recv); err != nil {
		return fmt.Errorf("train: digest check at step %d (rank %d of %d): all-gather: %w", t.step, comm.Rank(), size, err)
	}
	digests := make([]uint64, size)
	for r := range digests {
		for i := 0; i < 4; i++ {
			digests[r] = digests[r]<<16 | uint64(recv[4*r+i])
		}
	}
	counts := make(map[uint64]int, 1)
	best := digests[0]
	for _, g := range digests {
		counts[g]++
	}
	for _, g := range digests {
		if counts[g] > counts[best] {
			best = g
		}
	}
	if counts[best] == size {
		return nil
	}
	members := comm.Members()
	e := &DivergenceError{Step: t.step, Expected: best}
	for r, g := range digests {
		if g != best {
			id := ""
			if r < len(members) {
				id = members[r]
			}
			e.Peers = append(e.Peers, DivergentPeer{Rank: r, Member: id, Digest: g})
		}
	}
	return e
}
