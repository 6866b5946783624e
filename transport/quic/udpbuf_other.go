//go:build !unix

package quic

import (
	"errors"
	"net"
)

func socketBuffers(*net.UDPConn) (int, int, error) {
	return 0, 0, errors.New("socket buffer sizes unknown on this platform")
}
