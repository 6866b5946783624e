package sim

import (
	"errors"
	"testing"

	"github.com/ringtrain/ringtrain/bench/profile"
	"github.com/ringtrain/ringtrain/collective"
)

// toy: 10 ms forward, 30 ms backward, 2 ms optimizer; a 4 MB gradient ready
// 10 ms into backward and a 10 MB one at its end (fp32).
func toy() profile.Timeline {
	return profile.Timeline{ForwardMs: 10, BackwardMs: 30, OptimizerMs: 2, Grads: []profile.Tensor{
		{Name: "a", Numel: 1e6, ReadyMs: 10},
		{Name: "b", Numel: 2.5e6, ReadyMs: 30},
	}}
}

func TestStepRing(t *testing.T) {
	const ms = 1e-3
	for _, tc := range []struct {
		name string
		n    int
		st   Step
		want float64 // step seconds
		lim  Limit
	}{
		{"one GPU", 1, Step{Design: DesignRing}, 42 * ms, LimitCompute},
		// 14 MB reduced after backward over 2 peers at 1e9 B/s: 14 ms.
		{"no overlap", 2, Step{Design: DesignRing}, 56 * ms, LimitLink},
		// Bucket a (4 ms) runs at 20–24 ms, bucket b at 40–50 ms.
		{"overlap", 2, Step{Design: DesignRing, Overlap: true, BucketBytes: 1}, 52 * ms, LimitLink},
		// One bucket holding both: 14 ms after backward, as without overlap.
		{"overlap one bucket", 2, Step{Design: DesignRing, Overlap: true, BucketBytes: 1e9}, 56 * ms, LimitLink},
		// fp16 halves the bytes: 7 ms.
		{"fp16", 2, Step{Design: DesignRing, Wire: collective.Float16}, 49 * ms, LimitLink},
		// 4 GPUs: 2·3/4·14 MB = 21 ms.
		{"4 GPUs", 4, Step{Design: DesignRing}, 63 * ms, LimitLink},
		// Hierarchical, 2 per node: intra 2·1/2·14 MB at 14e9 B/s = 1 ms,
		// then a 2-node ring: 14 ms.
		{"hierarchical", 4, Step{Design: DesignRing, GPUsPerNode: 2, Hierarchical: true, IntraBytesPerSec: 14e9}, 57 * ms, LimitLink},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := Simulate(toy(), 8, tc.n, unit(), tc.st)
			if err != nil {
				t.Fatal(err)
			}
			if !near(r.StepSec, tc.want) || r.Limit != tc.lim {
				t.Fatalf("step %v s (%s), want %v s (%s)", r.StepSec, r.Limit, tc.want, tc.lim)
			}
			if !near(r.Efficiency, 42*ms/tc.want) || !near(r.ImagesPerSec, float64(8*tc.n)/tc.want) {
				t.Fatalf("efficiency %v images/s %v", r.Efficiency, r.ImagesPerSec)
			}
		})
	}
}

func TestStepLimits(t *testing.T) {
	// Flat ring with 2 GPUs per node: both peers' streams go through the
	// node's 8 cores at 3.75 CPU-s/GiB, so each gets 4/3.75 GiB/s.
	net := Net{Link: Link{BitsPerSec: 100e9}, Transport: Transport{CPUSecPerGiB: 3.75, Cores: 8}}
	r, err := Simulate(toy(), 8, 4, net, Step{Design: DesignRing, GPUsPerNode: 2})
	if err != nil {
		t.Fatal(err)
	}
	if !near(r.BytesPerSec, 4/3.75*GiB) || r.RateLimit != LimitCPU || r.Limit != LimitCPU {
		t.Fatalf("rate %v (%s), limit %s", r.BytesPerSec, r.RateLimit, r.Limit)
	}
	// Tiny chunks with a large alpha: overheads dominate.
	net = unit()
	net.Ring.ChunkBytes, net.Ring.AlphaSec = 1e3, 1e-5
	r, err = Simulate(toy(), 8, 4, net, Step{Design: DesignRing})
	if err != nil {
		t.Fatal(err)
	}
	if r.Limit != LimitChunk {
		t.Fatalf("limit %s, want %s", r.Limit, LimitChunk)
	}
	// A fast network hides everything behind backward.
	net = Net{Link: Link{BitsPerSec: 8e12, Goodput: 1}}
	r, err = Simulate(toy(), 8, 4, net, Step{Design: DesignRing, Overlap: true, BucketBytes: 1})
	if err != nil {
		t.Fatal(err)
	}
	if r.Limit != LimitCompute || r.Efficiency < 0.99 {
		t.Fatalf("limit %s efficiency %v", r.Limit, r.Efficiency)
	}
}

func TestPSLinearInWorkers(t *testing.T) {
	// Fixed 4 servers, no overheads, no overlap: each server moves n·S/4 each
	// way, so communication is 2·n·14 MB/4 at 1e9 B/s once n ≥ 4.
	var prev float64
	for _, n := range []int{4, 8, 16, 32, 64} {
		r, err := Simulate(toy(), 8, n, unit(), Step{Design: DesignPS, PSServers: 4})
		if err != nil {
			t.Fatal(err)
		}
		comm := r.StepSec - 0.042
		if want := 2 * float64(n) * 14e6 / 4 / 1e9; !near(comm, want) {
			t.Fatalf("n=%d: comm %v s, want %v", n, comm, want)
		}
		if prev > 0 && !near(comm, 2*prev) {
			t.Fatalf("n=%d: comm %v s is not twice %v", n, comm, prev)
		}
		if r.Limit != LimitPSServer {
			t.Fatalf("n=%d: limit %s", n, r.Limit)
		}
		prev = comm
	}
	// Fewer workers than servers: the worker's own link limits, 2·S/B.
	r, err := Simulate(toy(), 8, 2, unit(), Step{Design: DesignPS, PSServers: 4})
	if err != nil {
		t.Fatal(err)
	}
	if !near(r.StepSec, 0.042+0.028) {
		t.Fatalf("2 workers: step %v", r.StepSec)
	}
	// Overlapped push: with 4 workers and 4
	// servers each push takes as long as on the worker link: a at 20–24 ms,
	// b at 40–50 ms, then the 14 ms pull: 66 ms step with 2 ms optimizer.
	r, err = Simulate(toy(), 8, 4, unit(), Step{Design: DesignPS, PSServers: 4, Overlap: true, BucketBytes: 1})
	if err != nil {
		t.Fatal(err)
	}
	if !near(r.StepSec, 0.066) {
		t.Fatalf("overlapped push: step %v, want 0.066", r.StepSec)
	}
}

func TestSimulateRejects(t *testing.T) {
	for _, tc := range []struct {
		name string
		n    int
		st   Step
	}{
		{"zero GPUs", 0, Step{Design: DesignRing}},
		{"negative bucket size", 2, Step{Design: DesignRing, Overlap: true, BucketBytes: -1}},
		{"uneven nodes", 3, Step{Design: DesignRing, GPUsPerNode: 2}},
		{"hierarchical without intra rate", 4, Step{Design: DesignRing, GPUsPerNode: 2, Hierarchical: true}},
		{"no servers", 4, Step{Design: DesignPS}},
		{"unknown design", 4, Step{Design: "allgather-tree"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := Simulate(toy(), 8, tc.n, unit(), tc.st); !errors.Is(err, ErrConfig) {
				t.Fatalf("Simulate = %v, want ErrConfig", err)
			}
		})
	}
}
