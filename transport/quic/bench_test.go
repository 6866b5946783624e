package quic

import (
	"context"
	"crypto/tls"
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

// reportLoss reports the share of sent bytes QUIC declared lost: on
// loopback, losses mean a socket buffer overflowed.
func reportLoss(b *testing.B, conns ...*quicgo.Conn) {
	var sent, lost uint64
	for _, c := range conns {
		st := c.ConnectionStats()
		sent += st.BytesSent
		lost += st.BytesLost
	}
	if sent > 0 {
		b.ReportMetric(100*float64(lost)/float64(sent), "lost%")
	}
}

var benchSizes = []int{16 << 20, 64 << 20}

// BenchmarkRawQUIC is the baseline: plain quic-go streams with the same TLS
// and window settings as the transport, written and read in 256 KiB pieces,
// no framing and no reduction. n=1: one stream from a to b. n>=2: a ring of
// n endpoints in this process (one connection per neighbour pair), each
// sending 2(n-1)/n*S bytes to its successor while receiving as much from its
// predecessor: the bytes an n-peer ring all-reduce of S moves.
func BenchmarkRawQUIC(b *testing.B) {
	for _, n := range []int{1, 2, 4} {
		for _, size := range benchSizes {
			b.Run(fmt.Sprintf("n=%d/%dMiB", n, size>>20), func(b *testing.B) { benchRaw(b, n, size) })
		}
	}
}

// rawNode is one raw quic-go endpoint of the baseline.
type rawNode struct {
	id   string
	tr   *quicgo.Transport
	ln   *quicgo.Listener
	node interface {
		ClientConfig(string) *tls.Config
	}
}

// rawLinks connects node i to node (i+1)%n (for n=1, a to b) and returns a
// send stream and the matching receive stream per link.
func rawLinks(b *testing.B, n int) ([]*quicgo.SendStream, []*quicgo.ReceiveStream, []*quicgo.Conn) {
	cl := testCluster(b)
	cfg, _ := Config{ID: "x", Secret: testSecret()}.withDefaults()
	qconf := cfg.quicConfig()
	nodes := max(n, 2)
	rn := make([]rawNode, nodes)
	for i := range rn {
		id := fmt.Sprintf("raw-%d", i)
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
		rn[i] = rawNode{id: id, tr: tr, ln: ln, node: node}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	links := n
	if n == 1 {
		links = 1
	}
	// One connection per unordered pair, as the transport keeps.
	type pair struct{ dialer, acceptor *quicgo.Conn }
	conns := map[[2]int]pair{}
	var all []*quicgo.Conn
	connect := func(i, j int) (*quicgo.Conn, *quicgo.Conn) {
		key := [2]int{min(i, j), max(i, j)}
		if p, ok := conns[key]; ok {
			if i == key[0] {
				return p.dialer, p.acceptor
			}
			return p.acceptor, p.dialer
		}
		d, err := rn[key[0]].tr.Dial(ctx, rn[key[1]].ln.Addr(), rn[key[0]].node.ClientConfig(rn[key[1]].id), qconf)
		if err != nil {
			b.Fatal(err)
		}
		a, err := rn[key[1]].ln.Accept(ctx)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { d.CloseWithError(0, ""); a.CloseWithError(0, "") })
		conns[key] = pair{d, a}
		all = append(all, d, a)
		if i == key[0] {
			return d, a
		}
		return a, d
	}
	ws := make([]*quicgo.SendStream, links)
	rs := make([]*quicgo.ReceiveStream, links)
	for i := range links {
		from, to := connect(i, (i+1)%nodes)
		w, err := from.OpenUniStream()
		if err != nil {
			b.Fatal(err)
		}
		if _, err := w.Write([]byte{0}); err != nil { // make the stream visible
			b.Fatal(err)
		}
		r, err := to.AcceptUniStream(ctx)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(r, make([]byte, 1)); err != nil {
			b.Fatal(err)
		}
		ws[i], rs[i] = w, r
	}
	return ws, rs, all
}

func benchRaw(b *testing.B, n, size int) {
	ws, rs, conns := rawLinks(b, n)
	perLink := size
	factor := 1.0
	if n > 1 {
		factor = 2 * float64(n-1) / float64(n)
		perLink = int(float64(size) * factor)
	}
	pump(b, ws, rs, conns, size, perLink, factor)
}

// pump times b.N rounds in which every stream pair carries per bytes, in
// 256 KiB writes, all pairs at once, and reports size bytes per round.
func pump(b *testing.B, ws []*quicgo.SendStream, rs []*quicgo.ReceiveStream, conns []*quicgo.Conn, size, per int, factor float64) {
	const piece = 256 << 10
	src := make([]byte, per)
	dsts := make([][]byte, len(rs))
	for i := range dsts {
		dsts[i] = make([]byte, piece)
	}
	b.SetBytes(int64(size))
	b.ResetTimer()
	start, cpu0 := time.Now(), cpuSeconds(b)
	for range b.N {
		var wg sync.WaitGroup
		for i := range ws {
			wg.Go(func() {
				for off := 0; off < per; off += piece {
					if _, err := ws[i].Write(src[off:min(off+piece, per)]); err != nil {
						b.Error(err)
						return
					}
				}
			})
			wg.Go(func() {
				for got := 0; got < per; {
					k, err := io.ReadFull(rs[i], dsts[i][:min(piece, per-got)])
					if err != nil {
						b.Error(err)
						return
					}
					got += k
				}
			})
		}
		wg.Wait()
	}
	b.StopTimer()
	reportLoss(b, conns...)
	report(b, start, cpu0, int64(size), int64(len(ws)*per), factor)
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
	eps := newCluster(b, testSecret(), ids, nil)
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
	var conns []*quicgo.Conn
	for _, e := range eps {
		for _, c := range e.peers.Conns() {
			conns = append(conns, c.qc)
		}
	}
	reportLoss(b, conns...)
	factor := 2 * float64(n-1) / float64(n)
	report(b, start, cpu0, int64(size), int64(float64(n)*factor*float64(size)), factor)
}

// BenchmarkRawQUICLanes is the measurement behind the multi-connection plan
// (several QUIC connections per neighbour, see the package comment): S
// bytes from one process's side to the other's, split evenly over k raw
// quic-go connections, each with its own UDP sockets (so each has its own
// socket reader and connection goroutine on both ends), all at once. It
// shows how far k connections scale one link with the cores of this host.
func BenchmarkRawQUICLanes(b *testing.B) {
	for _, k := range []int{1, 2, 4} {
		b.Run(fmt.Sprintf("k=%d/64MiB", k), func(b *testing.B) { benchLanes(b, k, 64<<20) })
	}
}

func benchLanes(b *testing.B, k, size int) {
	var ws []*quicgo.SendStream
	var rs []*quicgo.ReceiveStream
	var conns []*quicgo.Conn
	for range k {
		w, r, c := rawLinks(b, 1) // one connection, one stream, own sockets
		ws, rs, conns = append(ws, w...), append(rs, r...), append(conns, c...)
	}
	pump(b, ws, rs, conns, size, size/k, 1)
}
