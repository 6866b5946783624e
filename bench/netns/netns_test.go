package netns

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// helperEnv makes the test binary act as a tiny TCP peer inside a namespace:
// "listen" accepts one connection and echoes one line; "dial ADDR" sends a
// line and expects it back.
const helperEnv = "RINGTRAIN_NETNS_TEST_HELPER"

func TestMain(m *testing.M) {
	if mode := os.Getenv(helperEnv); mode != "" {
		if err := helper(mode); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func helper(mode string) error {
	switch f := strings.Fields(mode); f[0] {
	case "listen":
		ln, err := net.Listen("tcp", f[1])
		if err != nil {
			return err
		}
		fmt.Println("ready")
		c, err := ln.Accept()
		if err != nil {
			return err
		}
		defer c.Close()
		line, err := bufio.NewReader(c).ReadString('\n')
		if err != nil {
			return err
		}
		_, err = c.Write([]byte(line))
		return err
	case "dial":
		c, err := net.DialTimeout("tcp", f[1], 5*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		if _, err := c.Write([]byte("ping\n")); err != nil {
			return err
		}
		line, err := bufio.NewReader(c).ReadString('\n')
		if err != nil || line != "ping\n" {
			return fmt.Errorf("echo: %q, %v", line, err)
		}
		return nil
	}
	return fmt.Errorf("unknown helper mode %q", mode)
}

func TestParseRateAndBurst(t *testing.T) {
	cases := []struct {
		name string
		in   string
		bps  float64
		ok   bool
	}{
		{"mbit", "40mbit", 40e6, true},
		{"gbit", "1gbit", 1e9, true},
		{"kbit fraction", "2.5kbit", 2500, true},
		{"bits", "100bit", 100, true},
		{"upper case", "20Mbit", 20e6, true},
		{"no unit", "40", 0, false},
		{"zero", "0mbit", 0, false},
		{"garbage", "fastmbit", 0, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := ParseRate(c.in)
			if (err == nil) != c.ok || got != c.bps {
				t.Fatalf("ParseRate(%q) = %v, %v; want %v ok=%v", c.in, got, err, c.bps, c.ok)
			}
		})
	}
	if got := Burst(40e6); got != 16*1514 {
		t.Errorf("Burst(40mbit) = %d, want the 16-frame floor %d", got, 16*1514)
	}
	if got := Burst(1e9); got != 500000 {
		t.Errorf("Burst(1gbit) = %d, want 4 ms = 500000", got)
	}
}

func TestSetupTeardown(t *testing.T) {
	if err := CheckRoot(); err != nil {
		t.Skip(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	top, err := Setup(ctx, Config{Peers: 3, Rate: "10mbit"})
	if err != nil {
		t.Fatal(err)
	}
	defer top.Close()

	names, err := List(ctx, top.Prefix)
	if err != nil {
		t.Fatal(err)
	}
	if len(names) != 4 {
		t.Fatalf("namespaces %v, want 3 peers + bridge", names)
	}
	for i, p := range top.Peers {
		out, err := exec.CommandContext(ctx, "tc", "-n", p.NS, "qdisc", "show", "dev", p.Dev).CombinedOutput()
		if err != nil || !strings.Contains(string(out), "tbf") || !strings.Contains(string(out), "10Mbit") {
			t.Errorf("peer %d qdisc: %s %v", i, out, err)
		}
	}

	// Peer 0 reaches peer 2 through the bridge.
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	addr := net.JoinHostPort(top.Peers[2].Addr.String(), "7001")
	ln := top.Command(ctx, 2, exe)
	ln.Env = append(os.Environ(), helperEnv+"=listen "+addr)
	out, err := ln.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := ln.Start(); err != nil {
		t.Fatal(err)
	}
	defer ln.Wait()
	if _, err := bufio.NewReader(out).ReadString('\n'); err != nil {
		t.Fatalf("listener did not start: %v", err)
	}
	dial := top.Command(ctx, 0, exe)
	dial.Env = append(os.Environ(), helperEnv+"=dial "+addr)
	if b, err := dial.CombinedOutput(); err != nil {
		t.Fatalf("dial from peer 0 to peer 2: %v: %s", err, b)
	}
	if err := ln.Wait(); err != nil {
		t.Fatalf("listener: %v", err)
	}

	if err := top.Close(); err != nil {
		t.Fatal(err)
	}
	if names, _ := List(ctx, top.Prefix); len(names) != 0 {
		t.Fatalf("left behind: %v", names)
	}
}

func TestCleanupStale(t *testing.T) {
	if err := CheckRoot(); err != nil {
		t.Skip(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// A pid that cannot be alive: above the kernel's pid_max limit.
	dead := fmt.Sprintf("%s%d-0", NamePrefix, 1<<23)
	live := fmt.Sprintf("%s%d-stale-test", NamePrefix, os.Getpid())
	for _, n := range []string{dead, live} {
		if err := run(ctx, "ip", "netns", "add", n); err != nil {
			t.Fatal(err)
		}
	}
	defer run(context.Background(), "ip", "netns", "del", live)
	removed, err := CleanupStale(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(removed) != 1 || removed[0] != dead {
		t.Fatalf("removed %v, want [%s]", removed, dead)
	}
	if !exists(live) {
		t.Fatalf("removed the live run's namespace %s", live)
	}
}

// TestNoBurst checks that NoBurst links carry a peak rate just above the
// rate in both directions (the timing effect is checked by bench's
// TestQUICEmulation).
func TestNoBurst(t *testing.T) {
	if err := CheckRoot(); err != nil {
		t.Skip(err)
	}
	if got := PeakRate(10e6); got != 10100001 {
		t.Fatalf("PeakRate(10mbit) = %d, want 10100001", got)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	top, err := Setup(ctx, Config{Peers: 1, Rate: "10mbit", NoBurst: true})
	if err != nil {
		t.Fatal(err)
	}
	defer top.Close()
	for _, side := range []struct{ ns, dev string }{{top.Peers[0].NS, top.Peers[0].Dev}, {top.Bridge, "p0"}} {
		out, err := exec.CommandContext(ctx, "tc", "-n", side.ns, "qdisc", "show", "dev", side.dev).CombinedOutput()
		if err != nil || !strings.Contains(string(out), "peakrate 10100Kbit") {
			t.Errorf("%s %s qdisc: %s %v", side.ns, side.dev, out, err)
		}
	}
}
