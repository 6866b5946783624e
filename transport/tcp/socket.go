package tcp

import (
	"bufio"
	"net"
	"sync"
	"time"
)

// sockBuf is the size of the buffers between crypto/tls and the socket:
// TLS writes and reads one record (≤ 16 KiB) per call, and without them
// every record would be a system call of its own.
const sockBuf = 256 << 10

// bufConn is the net.Conn crypto/tls runs over: writes collect in a buffer
// that flush sends (once per frame batch, under the connection's write
// lock) and reads come from a buffer filled by large reads. Until
// buffered is set (after the TLS handshake) writes go straight through, so
// the handshake never waits for a flush.
type bufConn struct {
	*net.TCPConn
	br *bufio.Reader // read only by the connection's reader goroutine

	mu       sync.Mutex // crypto/tls's writes and flush
	bw       *bufio.Writer
	buffered bool
}

func newBufConn(c *net.TCPConn) *bufConn {
	return &bufConn{TCPConn: c, br: bufio.NewReaderSize(c, sockBuf), bw: bufio.NewWriterSize(c, sockBuf)}
}

func (b *bufConn) Read(p []byte) (int, error) { return b.br.Read(p) }

func (b *bufConn) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.buffered {
		return b.TCPConn.Write(p)
	}
	return b.bw.Write(p)
}

// setBuffered switches writes to the buffer once the handshake is done.
func (b *bufConn) setBuffered() {
	b.mu.Lock()
	b.buffered = true
	b.mu.Unlock()
}

func (b *bufConn) flush() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.bw.Flush()
}

// congestion is the congestion control every connection asks for. A ring
// keeps each link busy with one long flow that pauses at step boundaries;
// with BBR (this machine's default, as on many hosts) 4 peers on 40 Mbit/s
// tbf links reached 92.3% and 93.1% of raw quic-go goodput, with CUBIC
// 98.3% twice (go run ./bench allreduce --links 40mbit --n 4 --sizes 16MiB
// --iters 3 --systems ringtrain). CUBIC is in every Linux kernel's allowed
// list, so no privilege is needed.
const congestion = "cubic"

// tune sets the options every connection gets: no Nagle delay (frames are
// batched by flush already), CUBIC congestion control (best effort),
// keep-alive probes every second and TCP_USER_TIMEOUT, so that a silent
// link is declared lost after userTimeout whether or not data is waiting
// to be acknowledged.
func tune(c *net.TCPConn, userTimeout time.Duration) error {
	if err := c.SetNoDelay(true); err != nil {
		return err
	}
	setCongestion(c, congestion)
	count := max(int(userTimeout/keepAlivePeriod), 1)
	if err := c.SetKeepAliveConfig(net.KeepAliveConfig{Enable: true, Idle: keepAlivePeriod, Interval: keepAlivePeriod, Count: count}); err != nil {
		return err
	}
	return setUserTimeout(c, userTimeout)
}
