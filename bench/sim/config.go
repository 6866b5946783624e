// Package sim simulates data-parallel training steps over ringtrain's ring
// all-reduce and over the parameter-server design of distributed TensorFlow
// 0.8, to extend measured scaling curves to ~100 GPUs.
//
// The ring model follows the protocol as ringtrain implements it (DESIGN.md
// §2): reduce-scatter then all-gather, n segments, each segment split into
// chunks that are pipelined, so a peer sends chunk k of step s+1 as soon as it
// has received and reduced chunk k of step s. Every chunk costs Alpha (a
// per-chunk overhead that occupies the sender) plus bytes/rate on the link;
// links are full duplex; a peer's single receiver reduces each incoming chunk
// at ReduceBytesPerSec before it takes the next (as ring.Run does). The ring is homogeneous and every peer runs the same
// schedule, so one peer's timeline is every peer's: the simulation is an exact
// evaluation of that schedule's recurrences, not a sampled one. A test runs
// the real collective over transport/mem links in fake time and checks that
// the simulated all-reduce takes the same time to the microsecond.
//
// Bucketed overlap uses the trainer's own bucket plan (collective.NewBucketer
// over the profile's gradients in ready order) and reduces buckets one after
// another, in plan order. ringtrain's
// AllReduceAsync lets buckets run concurrently, sharing the two ring links;
// when the links are the bottleneck both finish the last bucket at about the
// same time, which is what sets the step.
//
// The transport's CPU cost is part of the model: moving one GiB from a sender
// to a receiver costs CPUSecPerGiB CPU-seconds, half on each end, and a node
// gives the transport Cores cores. A ring peer sends and receives at the same
// rate X, so it spends CPUSecPerGiB·X CPU-seconds per second; the transport
// therefore caps X at (Cores-FixedCores)/CPUSecPerGiB GiB/s when that is below
// the link's goodput. Results say which of the two set the rate.
//
// All times are float64 seconds and all sizes float64 bytes; scaled
// emulation (gradients shrunk by a factor) rounds the gradient arena to
// whole floats as the emulated peers do (Segments).
package sim

import (
	"errors"
	"fmt"
	"math"
)

// ErrConfig is wrapped by every configuration error.
var ErrConfig = errors.New("invalid simulation config")

// GiB is 2^30 bytes.
const GiB = 1 << 30

// DefaultGoodput is the fraction of a shaped link's nominal rate that one
// quic-go stream carries as payload (DESIGN.md §7: ≈ 95.7%).
const DefaultGoodput = 0.957

// DefaultChunkBytes is the ring's default chunk (collective.Config.ChunkBytes).
const DefaultChunkBytes = 256 << 10

// DefaultReduceBytesPerSec is the speed of ring.Sum over 256 KiB chunks on
// this repository's 2-core AMD EPYC machine: 15.4–15.6 GB/s in
// `go test -bench Kernel/sum/256KiB ./ring` (the lowest run is used).
const DefaultReduceBytesPerSec = 15.4e9

// Link is one node's network attachment; rates are per direction.
type Link struct {
	BitsPerSec float64 // nominal rate per direction
	Goodput    float64 // payload fraction of the nominal rate; 0 means DefaultGoodput
	LatencySec float64 // one-way latency a chunk sees after it left the sender
}

// Transport is the CPU cost of the transport on one node.
type Transport struct {
	Name         string
	CPUSecPerGiB float64 // CPU-seconds to move one GiB sender→receiver, both ends together; 0 = free
	Cores        float64 // cores a node gives the transport
	FixedCores   float64 // cores used regardless of rate (timers, pacing, per-connection cost)
	// MaxBytesPerSec caps a node's transport rate per direction whatever its
	// cores (a plateau such as UDP receive-buffer drops); 0 means none.
	MaxBytesPerSec float64
}

// Ring holds the ring protocol's parameters.
type Ring struct {
	ChunkBytes        float64 // 0 means DefaultChunkBytes
	AlphaSec          float64 // per-chunk overhead, serial on the sender
	ReduceBytesPerSec float64 // reduction kernel speed; 0 means free
}

// Net is the cluster a simulation runs on: every node alike.
type Net struct {
	Link      Link
	Transport Transport
	Ring      Ring
}

// Limit names what sets a rate or a step time.
type Limit string

// Limits reported in results.
const (
	LimitLink     Limit = "link"
	LimitCPU      Limit = "transport-cpu"
	LimitPlateau  Limit = "transport-plateau"
	LimitChunk    Limit = "per-chunk"
	LimitCompute  Limit = "compute"
	LimitPSServer Limit = "ps-server"
)

func (n Net) validate() error {
	bad := func(what string, v float64) error { return fmt.Errorf("%w: %s = %v", ErrConfig, what, v) }
	finite := func(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }
	switch {
	case !(n.Link.BitsPerSec > 0) || !finite(n.Link.BitsPerSec):
		return bad("link rate", n.Link.BitsPerSec)
	case n.Link.Goodput < 0 || n.Link.Goodput > 1:
		return bad("goodput", n.Link.Goodput)
	case n.Link.LatencySec < 0 || !finite(n.Link.LatencySec):
		return bad("latency", n.Link.LatencySec)
	case n.Transport.CPUSecPerGiB < 0 || !finite(n.Transport.CPUSecPerGiB):
		return bad("transport CPU-s/GiB", n.Transport.CPUSecPerGiB)
	case n.Transport.CPUSecPerGiB > 0 && !(n.Transport.Cores > n.Transport.FixedCores):
		return bad("transport cores (must exceed fixed cores)", n.Transport.Cores)
	case n.Transport.MaxBytesPerSec < 0:
		return bad("transport max rate", n.Transport.MaxBytesPerSec)
	case n.Ring.ChunkBytes < 0 || !finite(n.Ring.ChunkBytes):
		return bad("chunk bytes", n.Ring.ChunkBytes)
	case n.Ring.AlphaSec < 0 || !finite(n.Ring.AlphaSec):
		return bad("alpha", n.Ring.AlphaSec)
	case n.Ring.ReduceBytesPerSec < 0:
		return bad("reduce rate", n.Ring.ReduceBytesPerSec)
	}
	return nil
}

func (n Net) chunk() float64 {
	if n.Ring.ChunkBytes > 0 {
		return n.Ring.ChunkBytes
	}
	return DefaultChunkBytes
}

// linkBytesPerSec is the payload rate of the link per direction.
func (n Net) linkBytesPerSec() float64 {
	g := n.Link.Goodput
	if g == 0 {
		g = DefaultGoodput
	}
	return n.Link.BitsPerSec / 8 * g
}

// rate returns the per-direction payload rate of a node whose transport
// carries `streams` equal byte streams that each send and receive at that
// rate (duplex: a ring peer) or only one of the two (simplex halves the CPU
// cost per byte: a parameter server in its push or pull phase), and what
// limits it.
func (n Net) rate(streams float64, duplex bool) (float64, Limit) {
	x, lim := n.linkBytesPerSec(), LimitLink
	t := n.Transport
	if t.CPUSecPerGiB > 0 {
		perByte := t.CPUSecPerGiB / GiB * streams // CPU-s per byte sent (and received, if duplex)
		if !duplex {
			perByte /= 2
		}
		if c := (t.Cores - t.FixedCores) / perByte; c < x {
			x, lim = c, LimitCPU
		}
	}
	if t.MaxBytesPerSec > 0 && t.MaxBytesPerSec < x {
		x, lim = t.MaxBytesPerSec, LimitPlateau
	}
	return x, lim
}

// TCPConnBytesPerSec is what one TLS 1.3 connection over TCP carries per
// direction with one core at each end: Go's crypto/tls over one loopback
// connection on the 2-core development VM moved 1,308–1,454 MB/s (at
// 1.29–1.41 CPU-s/GiB for both ends together, so about one core per end);
// the middle of that range.
const TCPConnBytesPerSec = 1.38e9

// TransportPreset returns the named transport calibration with the given
// cores. The figures are those of DESIGN.md §7 and issue 8:
//   - quic-loopback: quic-go at full speed on loopback, 3.5–4 CPU-s/GiB
//     sent+received (3.75 used);
//   - quic-xeon: one quic-go connection on a 16-core Xeon VM, 484 MB/s on
//     3.7 cores (≈ 8 CPU-s/GiB), several connections plateau at ≈ 830 MB/s;
//   - tcp: ringtrain's transport/tcp, the trainer's default gradient plane:
//     TLS 1.3 over one TCP connection per neighbour, 1.39 CPU-s/GiB, and at
//     most TCPConnBytesPerSec per direction, because one connection is
//     encrypted by one goroutine and decrypted by one (one core per end);
//   - tcp-tls: TCP+TLS over several connections (4 when measured), 1.39
//     CPU-s/GiB and no per-connection cap: what lanes would give;
//   - free: no CPU cost (the link alone limits).
func TransportPreset(name string, cores float64) (Transport, error) {
	switch name {
	case "quic-loopback":
		return Transport{Name: name, CPUSecPerGiB: 3.75, Cores: cores}, nil
	case "quic-xeon":
		return Transport{Name: name, CPUSecPerGiB: 8, Cores: cores, MaxBytesPerSec: 830e6}, nil
	case "tcp":
		return Transport{Name: name, CPUSecPerGiB: 1.39, Cores: cores, MaxBytesPerSec: TCPConnBytesPerSec}, nil
	case "tcp-tls":
		return Transport{Name: name, CPUSecPerGiB: 1.39, Cores: cores}, nil
	case "free":
		return Transport{Name: name, Cores: cores}, nil
	}
	return Transport{}, fmt.Errorf("%w: unknown transport preset %q (tcp, quic-loopback, quic-xeon, tcp-tls, free)", ErrConfig, name)
}
