package tcp

import (
	"net"
	"os"
	"strings"
	"testing"
	"time"
)

// TestTuneCongestion: tune asks for CUBIC on both ends of a connection;
// a kernel that does not offer it keeps its default (the request is best
// effort), so the expectation follows the kernel's list.
func TestTuneCongestion(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			close(accepted)
			return
		}
		accepted <- c
	}()
	d, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	a, ok := <-accepted
	if !ok {
		t.Fatal("accept failed")
	}
	defer a.Close()

	want := congestion
	avail, err := os.ReadFile("/proc/sys/net/ipv4/tcp_available_congestion_control")
	if err != nil || !strings.Contains(" "+strings.TrimSpace(string(avail))+" ", " "+congestion+" ") {
		def, err := os.ReadFile("/proc/sys/net/ipv4/tcp_congestion_control")
		if err != nil {
			t.Fatal(err)
		}
		want = strings.TrimSpace(string(def))
	}
	for _, tc := range []struct {
		name string
		c    net.Conn
	}{{"dialer", d}, {"acceptor", a}} {
		t.Run(tc.name, func(t *testing.T) {
			c := tc.c.(*net.TCPConn)
			if err := tune(c, 10*time.Second); err != nil {
				t.Fatal(err)
			}
			got, err := congestionOf(c)
			if err != nil || got != want {
				t.Fatalf("congestion control %q, %v; want %q", got, err, want)
			}
		})
	}
}
