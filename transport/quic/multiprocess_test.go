package quic

import (
	"bufio"
	"context"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ringtrain/ringtrain/collective"
	"github.com/ringtrain/ringtrain/collective/collectivetest"
	"github.com/ringtrain/ringtrain/internal/secret"
)

// Environment of a child process of TestFourProcessAllReduce.
const (
	envChildRank = "RINGTRAIN_QUIC_CHILD_RANK"
	envSecret    = "RINGTRAIN_QUIC_CHILD_SECRET"
	envPeers     = "RINGTRAIN_QUIC_CHILD_PEERS"
)

const (
	mpPeers    = 4
	mpElements = 4 << 20 // 16 MiB of float32
)

// TestFourProcessAllReduce starts 4 OS processes (this test binary re-run)
// on 127.0.0.1 that each all-reduce 16 MiB over QUIC and check every element
// of the result exactly.
func TestFourProcessAllReduce(t *testing.T) {
	if os.Getenv(envChildRank) != "" {
		runChild(t)
		return
	}
	if testing.Short() {
		t.Skip("starts 4 processes")
	}
	_, sec, err := secret.Ephemeral()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	type child struct {
		cmd   *exec.Cmd
		stdin io.WriteCloser
		lines chan string
		out   strings.Builder
	}
	children := make([]*child, mpPeers)
	addrs := make([]string, mpPeers)
	for r := range children {
		cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestFourProcessAllReduce$", "-test.v")
		cmd.Env = append(os.Environ(), envChildRank+"="+strconv.Itoa(r), envSecret+"="+hex.EncodeToString(sec))
		stdin, err := cmd.StdinPipe()
		if err != nil {
			t.Fatal(err)
		}
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stderr = cmd.Stdout
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		c := &child{cmd: cmd, stdin: stdin, lines: make(chan string, 64)}
		children[r] = c
		go func() {
			sc := bufio.NewScanner(stdout)
			for sc.Scan() {
				c.lines <- sc.Text()
			}
			close(c.lines)
		}()
	}
	// Rendezvous: each child prints its address; all get the full list.
	for r, c := range children {
		for addrs[r] == "" {
			select {
			case line, ok := <-c.lines:
				if !ok {
					t.Fatalf("child %d exited before printing its address:\n%s", r, c.out.String())
				}
				c.out.WriteString(line + "\n")
				if a, ok := strings.CutPrefix(line, "ADDR "); ok {
					addrs[r] = a
				}
			case <-ctx.Done():
				t.Fatalf("child %d: no address", r)
			}
		}
	}
	for _, c := range children {
		fmt.Fprintln(c.stdin, strings.Join(addrs, ","))
		c.stdin.Close()
	}
	var wg sync.WaitGroup
	results := make([]string, mpPeers)
	for r, c := range children {
		wg.Go(func() {
			for line := range c.lines {
				c.out.WriteString(line + "\n")
				if s, ok := strings.CutPrefix(line, "RESULT "); ok {
					results[r] = s
				}
			}
		})
	}
	wg.Wait()
	for r, c := range children {
		err := c.cmd.Wait()
		if err != nil || results[r] != "exact" {
			t.Errorf("child %d: exit %v, result %q; output:\n%s", r, err, results[r], c.out.String())
		} else {
			t.Logf("child %d: %s", r, results[r])
		}
	}
}

// runChild is one process of TestFourProcessAllReduce.
func runChild(t *testing.T) {
	rank, err := strconv.Atoi(os.Getenv(envChildRank))
	if err != nil {
		t.Fatal(err)
	}
	sec, err := hex.DecodeString(os.Getenv(envSecret))
	if err != nil {
		t.Fatal(err)
	}
	ids := make([]string, mpPeers)
	for i := range ids {
		ids[i] = fmt.Sprintf("proc-%d", i)
	}
	e, err := Listen(Config{ID: ids[rank], Secret: sec, Logger: slog.New(slog.NewTextHandler(os.Stdout, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	fmt.Printf("ADDR %s\n", e.Addr())
	line, err := bufio.NewReader(os.Stdin).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	addrs := strings.Split(strings.TrimSpace(line), ",")
	if len(addrs) != mpPeers {
		t.Fatalf("got %d addresses", len(addrs))
	}
	for i, a := range addrs {
		if i != rank {
			e.AddPeer(ids[i], a)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	g, err := collective.New(ctx, collective.Config{Endpoint: e, Members: ids, Epoch: 1})
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]float32, mpElements)
	for i := range buf {
		buf[i] = collectivetest.Value(rank, i)
	}
	start := time.Now()
	if err := g.AllReduce(ctx, buf, collective.Sum); err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	for i, v := range buf {
		var want float32
		for r := range mpPeers {
			want += collectivetest.Value(r, i)
		}
		if v != want {
			t.Fatalf("element %d = %v, want %v", i, v, want)
		}
	}
	// Stay up until every peer is done with us: a barrier.
	if err := g.Barrier(ctx); err != nil {
		t.Fatal(err)
	}
	fmt.Printf("all-reduce of %d MiB took %v\n", mpElements*4>>20, took)
	fmt.Println("RESULT exact")
}
