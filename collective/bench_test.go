package collective_test

import (
	"context"
	"fmt"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/ringtrain/ringtrain/collective"
	"github.com/ringtrain/ringtrain/collective/collectivetest"
)

// BenchmarkAllReduceMem: in-memory ring all-reduce, reported with the
// nccl-tests definitions (algbw = S/t, busbw = algbw·2(n−1)/n). Allocations
// are those of all n ranks together per operation.
func BenchmarkAllReduceMem(b *testing.B) {
	for _, n := range []int{2, 4, 8} {
		for _, mib := range []int{1, 16, 64} {
			b.Run(fmt.Sprintf("n=%d/size=%dMiB", n, mib), func(b *testing.B) {
				c := collectivetest.NewCluster(b, memFactory, n)
				gs := c.Groups(b, 0)
				count := mib << 20 / 4
				bufs := make([][]float32, n)
				for r := range bufs {
					bufs[r] = make([]float32, count)
				}
				op := allReduceAll(b, gs, bufs)
				op() // warm-up: connections, schedules, buffer pools
				b.ReportAllocs()
				b.ResetTimer()
				start := time.Now()
				for b.Loop() {
					op()
				}
				sec := time.Since(start).Seconds() / float64(b.N)
				algbw := float64(mib<<20) / sec / 1e9
				b.ReportMetric(algbw, "algbw_GB/s")
				b.ReportMetric(algbw*2*float64(n-1)/float64(n), "busbw_GB/s")
			})
		}
	}
}

// TestAllReduceAllocatesPerChunk: after warm-up an all-reduce of a 16 MiB
// buffer allocates far less than the buffer (pooled chunk buffers,
// cached schedules); what remains is per-operation bookkeeping.
func TestAllReduceAllocatesPerChunk(t *testing.T) {
	const n, count = 4, 4 << 20
	c := collectivetest.NewCluster(t, memFactory, n)
	gs := c.Groups(t, 256<<10)
	bufs := make([][]float32, n)
	for r := range bufs {
		bufs[r] = make([]float32, count)
	}
	op := allReduceAll(t, gs, bufs)
	for range 3 {
		op()
	}
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	const ops = 5
	for range ops {
		op()
	}
	runtime.ReadMemStats(&m1)
	perOp := (m1.TotalAlloc - m0.TotalAlloc) / ops / n
	t.Logf("bytes allocated per rank per 16 MiB all-reduce: %d", perOp)
	// Budget: a handful of chunks (256 KiB each) per rank, not the buffer.
	if limit := uint64(4 * 256 << 10); perOp > limit {
		t.Fatalf("allocated %d bytes per rank per operation, want ≤ %d (O(chunk), not O(buffer)=%d)", perOp, limit, 4*count)
	}
}

// allReduceAll returns a function that sums bufs[r] over all ranks at once.
func allReduceAll(tb testing.TB, gs []*collective.Group, bufs [][]float32) func() {
	return func() {
		for r, err := range collectivetest.Parallel(gs, func(r int, g *collective.Group) error {
			return g.AllReduce(context.Background(), bufs[r], collective.Sum)
		}) {
			if err != nil {
				tb.Fatalf("rank %d: %v", r, err)
			}
		}
	}
}

// BenchmarkAllReduceMemWire: the in-memory ring over each wire dtype.
// algbw and busbw count float32 bytes (the buffer's size in memory), so a
// 16-bit wire shows its gain directly.
func BenchmarkAllReduceMemWire(b *testing.B) {
	for _, n := range []int{2, 4} {
		for _, mib := range []int{16, 64} {
			for _, d := range collectivetest.WireDTypes {
				b.Run(fmt.Sprintf("n=%d/size=%dMiB/wire=%v", n, mib, d), func(b *testing.B) {
					c := collectivetest.NewCluster(b, memFactory, n)
					gs := c.Groups(b, 0)
					count := mib << 20 / 4
					bufs := make([][]float32, n)
					for r := range bufs {
						bufs[r] = make([]float32, count)
						for i := range bufs[r] {
							bufs[r][i] = float32(i%1000) * 0.001
						}
					}
					op := func() {
						for r, err := range collectivetest.Parallel(gs, func(r int, g *collective.Group) error {
							return g.AllReduceWire(context.Background(), bufs[r], collective.Avg, d)
						}) {
							if err != nil {
								b.Fatalf("rank %d: %v", r, err)
							}
						}
					}
					op()
					b.ReportAllocs()
					b.ResetTimer()
					start, cpu0 := time.Now(), cpuTime(b)
					for b.Loop() {
						op()
					}
					sec := time.Since(start).Seconds() / float64(b.N)
					algbw := float64(mib<<20) / sec / 1e9
					b.ReportMetric(algbw, "algbw_GB/s")
					b.ReportMetric(algbw*2*float64(n-1)/float64(n), "busbw_GB/s")
					// CPU time of all ranks per GiB of bus traffic n·S·2(n−1)/n, as
					// bench allreduce counts it: unlike busbw it does not depend on
					// how much of the machine other processes take.
					bus := float64(b.N) * float64(mib<<20) * 2 * float64(n-1) / (1 << 30)
					b.ReportMetric((cpuTime(b)-cpu0).Seconds()/bus, "cpu-s/GiB")
				})
			}
		}
	}
}

// cpuTime is the user+system CPU time of this process so far.
func cpuTime(tb testing.TB) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkBucketedMem: the cost of cutting a 16 MiB arena of 64 equal
// segments into buckets of various sizes, on 4 in-memory peers, without
// any computation to overlap: what a bucket size costs in per-operation
// overhead (the gain from overlap is measured on real models in train).
func BenchmarkBucketedMem(b *testing.B) {
	const n, total, nsegs = 4, 4 << 20, 64
	segs, _ := layout(func() []int {
		s := make([]int, nsegs)
		for i := range s {
			s[i] = total / nsegs
		}
		return s
	}()...)
	for _, kib := range []int{64, 256, 1 << 10, 4 << 10, 16 << 10, 25 << 10} {
		b.Run(fmt.Sprintf("bucket=%dKiB", kib), func(b *testing.B) {
			c := collectivetest.NewCluster(b, memFactory, n)
			gs := c.Groups(b, 0)
			bks := make([]*collective.Bucketer, n)
			for r := range bks {
				var err error
				if bks[r], err = collective.NewBucketer(make([]float32, total), segs, collective.BucketConfig{BucketBytes: kib << 10}); err != nil {
					b.Fatal(err)
				}
			}
			op := func() {
				for r, err := range collectivetest.Parallel(gs, func(r int, g *collective.Group) error {
					round := bks[r].Start(context.Background(), g)
					for s := range segs {
						if err := round.Ready(s); err != nil {
							return err
						}
					}
					return round.Wait(context.Background())
				}) {
					if err != nil {
						b.Fatalf("rank %d: %v", r, err)
					}
				}
			}
			op()
			b.ReportAllocs()
			b.ResetTimer()
			start := time.Now()
			for b.Loop() {
				op()
			}
			sec := time.Since(start).Seconds() / float64(b.N)
			algbw := float64(4*total) / sec / 1e9
			b.ReportMetric(algbw*2*float64(n-1)/float64(n), "busbw_GB/s")
			b.ReportMetric(float64(len(bks[0].Buckets())), "buckets")
		})
	}
}
