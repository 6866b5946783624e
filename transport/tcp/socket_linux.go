package tcp

import (
	"net"
	"strings"
	"syscall"
	"time"
	"unsafe"
)

// tcpUserTimeout is TCP_USER_TIMEOUT from linux/tcp.h (syscall lacks it).
const tcpUserTimeout = 0x12

func setUserTimeout(c *net.TCPConn, d time.Duration) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	err = rc.Control(func(fd uintptr) {
		serr = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, tcpUserTimeout, int(d.Milliseconds()))
	})
	if err != nil {
		return err
	}
	return serr
}

// tcpCongestion is TCP_CONGESTION from linux/tcp.h.
const tcpCongestion = 13

// setCongestion asks for congestion control algo on c. Best effort: a
// kernel without it (or one that does not allow it to unprivileged
// processes) keeps its default, which still works, only slower on some
// links.
func setCongestion(c *net.TCPConn, algo string) {
	rc, err := c.SyscallConn()
	if err != nil {
		return
	}
	_ = rc.Control(func(fd uintptr) {
		_ = syscall.SetsockoptString(int(fd), syscall.IPPROTO_TCP, tcpCongestion, algo)
	})
}

// congestionOf reads c's congestion control algorithm (for tests).
func congestionOf(c *net.TCPConn) (string, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return "", err
	}
	var name string
	var serr error
	err = rc.Control(func(fd uintptr) {
		b := make([]byte, 16)
		l := uint32(len(b))
		_, _, e := syscall.Syscall6(syscall.SYS_GETSOCKOPT, fd, syscall.IPPROTO_TCP, tcpCongestion,
			uintptr(unsafe.Pointer(&b[0])), uintptr(unsafe.Pointer(&l)), 0)
		if e != 0 {
			serr = e
			return
		}
		name = strings.TrimRight(string(b[:l]), "\x00")
	})
	if err != nil {
		return "", err
	}
	return name, serr
}
