package quic

import (
	"log/slog"
	"net"
)

// wantUDPBuffer is the socket buffer quic-go asks for (7 MiB); below it,
// bursts at full speed drop packets and throughput collapses.
const wantUDPBuffer = 7 << 20

// udpBufferAdvice returns the warning to log for the kernel-granted buffer
// sizes, or "" when they suffice.
func udpBufferAdvice(rcv, snd int) string {
	if rcv >= wantUDPBuffer && snd >= wantUDPBuffer {
		return ""
	}
	return "the kernel limits UDP socket buffers; QUIC throughput will suffer. Fix: sysctl -w net.core.rmem_max=7500000 net.core.wmem_max=7500000"
}

// checkUDPBuffers logs one line when the socket's buffers are too small.
func checkUDPBuffers(c *net.UDPConn, log *slog.Logger) {
	rcv, snd, err := socketBuffers(c)
	if err != nil {
		return
	}
	if msg := udpBufferAdvice(rcv, snd); msg != "" {
		log.Warn(msg, "receive_buffer", rcv, "send_buffer", snd, "want", wantUDPBuffer)
	}
}
