package tcp

import (
	"context"
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/ringtrain/ringtrain/transport"
)

// cpuSeconds is the process's user+system CPU time.
func cpuSeconds(b *testing.B) float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}

// BenchmarkTCP moves size bytes from a to b per iteration through the
// transport, as the ring does: messages of chunk bytes on one tag, the
// receiver's Recv posted before each message arrives (the direct path) or
// not. It reports MB/s and CPU-s/GiB of both ends together, comparable
// with transport/quic's BenchmarkRawQUIC (n=1).
func BenchmarkTCP(b *testing.B) {
	for _, chunk := range []int{256 << 10, 4 << 20} {
		for _, size := range []int{64 << 20} {
			b.Run(fmt.Sprintf("chunk=%dKiB/%dMiB", chunk>>10, size>>20), func(b *testing.B) { benchTCP(b, size, chunk) })
		}
	}
}

func benchTCP(b *testing.B, size, chunk int) {
	eps := newCluster(b, testSecret(), []string{"a", "b"}, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	ab, err := eps[0].Conn(ctx, "b")
	if err != nil {
		b.Fatal(err)
	}
	ba, err := eps[1].Conn(ctx, "a")
	if err != nil {
		b.Fatal(err)
	}
	src, dst := make([]byte, chunk), make([]byte, chunk)
	errc := make(chan error, 1)
	b.SetBytes(int64(size))
	cpu0 := cpuSeconds(b)
	start := time.Now()
	for i := 0; b.Loop(); i++ {
		tag := transport.Tag{Epoch: 1, Op: uint64(i)}
		go func() {
			for off := 0; off < size; off += chunk {
				if err := ab.Send(ctx, tag, src); err != nil {
					errc <- err
					return
				}
			}
			errc <- nil
		}()
		for off := 0; off < size; off += chunk {
			if n, err := ba.Recv(ctx, tag, dst); err != nil || n != chunk {
				b.Fatalf("recv: %d %v", n, err)
			}
		}
		if err := <-errc; err != nil {
			b.Fatal(err)
		}
	}
	el := time.Since(start).Seconds()
	cpu := cpuSeconds(b) - cpu0
	b.ReportMetric(float64(size)*float64(b.N)/el/1e6, "MB/s")
	b.ReportMetric(cpu/(float64(size)*float64(b.N)/(1<<30)), "cpu-s/GiB")
}
