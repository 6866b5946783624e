package quic

import (
	"context"
	"fmt"
	"io"
	"net"
	"sync"
	"syscall"
	"testing"
	"time"

	quicgo "github.com/quic-go/quic-go"

	"github.com/ringtrain/ringtrain/collective"
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

// report adds the figures the issue asks for. wireBytes is the payload that
// crossed links in one iteration (each byte counted once, though it costs a
// send and a receive); algBytes is S of nccl-tests (algbw = S/t).
func report(b *testing.B, start time.Time, cpu0 float64, algBytes, wireBytes int64, busFactor float64) {
	el := time.Since(start).Seconds()
	cpu := cpuSeconds(b) - cpu0
	algbw := float64(algBytes) * float64(b.N) / el / 1e6
	b.ReportMetric(algbw, "algMB/s")
	b.ReportMetric(algbw*busFactor, "busMB/s")
	b.ReportMetric(cpu/(float64(wireBytes)*float64(b.N)/(1<<30)), "cpu-s/GiB")
	b.ReportMetric(0, "ns/op") // wall time per op is in algMB/s
}

var benchSizes = []int{16 << 20, 64 << 20}

// BenchmarkRawQUIC is the baseline: quic-go streams between two endpoints
// in this process, with the same TLS and window settings as the transport,
// written and read in 256 KiB pieces. dirs=2 sends both ways at once (one
// stream each way), like a 2-peer ring.
func BenchmarkRawQUIC(b *testing.B) {
	for _, dirs := range []int{1, 2} {
		for _, size := range benchSizes {
			b.Run(fmt.Sprintf("dirs=%d/%dMiB", dirs, size>>20), func(b *testing.B) { benchRaw(b, dirs, size) })
		}
	}
}

func rawPair(b *testing.B) (*quicgo.Conn, *quicgo.Conn) {
	cl := testCluster(b)
	cfg, _ := Config{ID: "x", Cluster: cl}.withDefaults()
	qconf := cfg.quicConfig()
	qconf.MaxIncomingStreams = 10
	listen := func(id string) (*quicgo.Transport, *quicgo.Listener) {
		node, err := cl.Node(id)
		if err != nil {
			b.Fatal(err)
		}
		udp, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			b.Fatal(err)
		}
		tr := &quicgo.Transport{Conn: udp}
		ln, err := tr.Listen(node.ServerConfig(), qconf)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { ln.Close(); tr.Close(); udp.Close() })
		return tr, ln
	}
	trA, _ := listen("a")
	_, lnB := listen("b")
	nodeA, _ := cl.Node("a")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	qa, err := trA.Dial(ctx, lnB.Addr(), nodeA.ClientConfig("b"), qconf)
	if err != nil {
		b.Fatal(err)
	}
	qb, err := lnB.Accept(ctx)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { qa.CloseWithError(0, ""); qb.CloseWithError(0, "") })
	return qa, qb
}

func benchRaw(b *testing.B, dirs, size int) {
	qa, qb := rawPair(b)
	const piece = 256 << 10
	// One long-lived stream per direction, as a transport without
	// per-message framing would use.
	type pipe struct {
		w *quicgo.SendStream
		r *quicgo.ReceiveStream
	}
	open := func(from, to *quicgo.Conn) pipe {
		w, err := from.OpenUniStream()
		if err != nil {
			b.Fatal(err)
		}
		if _, err := w.Write([]byte{0}); err != nil { // make the stream visible
			b.Fatal(err)
		}
		r, err := to.AcceptUniStream(context.Background())
		if err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(r, make([]byte, 1)); err != nil {
			b.Fatal(err)
		}
		return pipe{w, r}
	}
	pipes := []pipe{open(qa, qb)}
	if dirs == 2 {
		pipes = append(pipes, open(qb, qa))
	}
	src := make([]byte, size)
	dsts := make([][]byte, dirs)
	for i := range dsts {
		dsts[i] = make([]byte, piece)
	}
	b.SetBytes(int64(size))
	b.ResetTimer()
	start, cpu0 := time.Now(), cpuSeconds(b)
	for range b.N {
		var wg sync.WaitGroup
		for i, p := range pipes {
			wg.Go(func() {
				for off := 0; off < size; off += piece {
					if _, err := p.w.Write(src[off : off+piece]); err != nil {
						b.Error(err)
						return
					}
				}
			})
			wg.Go(func() {
				for got := 0; got < size; {
					n, err := io.ReadFull(p.r, dsts[i][:min(piece, size-got)])
					if err != nil {
						b.Error(err)
						return
					}
					got += n
				}
			})
		}
		wg.Wait()
	}
	b.StopTimer()
	report(b, start, cpu0, int64(size), int64(dirs*size), 1)
}

// BenchmarkAllReduce is ringtrain's all-reduce over this transport: n
// endpoints in this process on 127.0.0.1, one collective.Group each.
func BenchmarkAllReduce(b *testing.B) {
	for _, n := range []int{2, 4} {
		for _, size := range benchSizes {
			for _, chunk := range []int{collective.DefaultChunkBytes, 1 << 20} {
				b.Run(fmt.Sprintf("n=%d/%dMiB/chunk=%dKiB", n, size>>20, chunk>>10), func(b *testing.B) {
					benchAllReduce(b, n, size, chunk)
				})
			}
		}
	}
}

func benchAllReduce(b *testing.B, n, size, chunk int) {
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("bench-%d", i)
	}
	eps := newCluster(b, testCluster(b), ids, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	gs := make([]*collective.Group, n)
	bufs := make([][]float32, n)
	var wg sync.WaitGroup
	for i, e := range eps {
		bufs[i] = make([]float32, size/4)
		wg.Go(func() {
			var err error
			gs[i], err = collective.New(ctx, collective.Config{Endpoint: transport.Endpoint(e), Members: ids, Epoch: 1, ChunkBytes: chunk})
			if err != nil {
				b.Error(err)
			}
		})
	}
	wg.Wait()
	if b.Failed() {
		return
	}
	run := func() {
		var wg sync.WaitGroup
		for i, g := range gs {
			wg.Go(func() {
				if err := g.AllReduce(ctx, bufs[i], collective.Sum); err != nil {
					b.Error(err)
				}
			})
		}
		wg.Wait()
	}
	run() // warm-up: connections, windows, buffer pools
	b.SetBytes(int64(size))
	b.ResetTimer()
	start, cpu0 := time.Now(), cpuSeconds(b)
	for range b.N {
		run()
	}
	b.StopTimer()
	factor := 2 * float64(n-1) / float64(n)
	report(b, start, cpu0, int64(size), int64(float64(n)*factor*float64(size)), factor)
}
