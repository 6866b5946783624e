//go:build !linux

package tcp

import (
	"net"
	"time"
)

// setUserTimeout: without TCP_USER_TIMEOUT, keep-alive alone bounds how
// long a silent idle link lives.
func setUserTimeout(*net.TCPConn, time.Duration) error { return nil }

// setCongestion: the platform's default congestion control is kept.
func setCongestion(*net.TCPConn, string) {}
