//go:build unix

package quic

import (
	"net"
	"runtime"
	"syscall"
)

// socketBuffers reads the buffer sizes the kernel granted.
func socketBuffers(c *net.UDPConn) (rcv, snd int, err error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return 0, 0, err
	}
	var serr error
	err = raw.Control(func(fd uintptr) {
		rcv, serr = syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF)
		if serr == nil {
			snd, serr = syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_SNDBUF)
		}
	})
	if err == nil {
		err = serr
	}
	if runtime.GOOS == "linux" {
		// Linux reports twice the size it grants for data (the other half
		// is bookkeeping), so 2*rmem_max reads as "enough" when it is not.
		rcv, snd = rcv/2, snd/2
	}
	return rcv, snd, err
}
