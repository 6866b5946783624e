package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// End-to-end tests of the built binary: separate trainer processes on
// 127.0.0.1 over QUIC, joined through a seed list.

func buildTrainer(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("end-to-end test: builds and runs trainer processes")
	}
	bin := filepath.Join(t.TempDir(), "trainer")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// node is one trainer process and what it logged.
type node struct {
	id   string
	cmd  *exec.Cmd
	dir  string
	mu   sync.Mutex
	recs []map[string]any
	done chan error
	// exited is closed when the process has exited (done delivers the
	// error once).
	exited chan struct{}
}

type cluster struct {
	t      *testing.T
	bin    string
	dir    string
	secret string
	nodes  []*node
	seed   string
}

func newCluster(t *testing.T) *cluster {
	return &cluster{t: t, bin: buildTrainer(t), dir: t.TempDir(), secret: "e2e-test-secret-0123456789"}
}

// start launches a node; the first one's gossip address becomes the seed.
func (c *cluster) start(id string, args ...string) *node {
	c.t.Helper()
	n := &node{id: id, dir: filepath.Join(c.dir, id), done: make(chan error, 1)}
	os.MkdirAll(n.dir, 0o755)
	a := []string{"--node-id", id, "--listen", "127.0.0.1:0", "--quic-listen", "127.0.0.1:0",
		"--log-format", "json", "--progress", "log", "--summary-json", filepath.Join(n.dir, "summary.json")}
	if c.seed != "" {
		a = append(a, "--seeds", c.seed)
	}
	n.cmd = exec.Command(c.bin, append(a, args...)...)
	n.cmd.Env = append(os.Environ(), "RINGTRAIN_SECRET="+c.secret)
	spawn(c.t, n)
	c.nodes = append(c.nodes, n)
	if c.seed == "" {
		r := n.waitFor(c.t, 30*time.Second, func(r map[string]any) bool { return r["msg"] == "listening" })
		c.seed = r["gossip"].(string)
	}
	return n
}

// spawn starts n.cmd and collects its JSON log lines (stdout) into n.recs;
// n.done receives its exit.
func spawn(t *testing.T, n *node) {
	t.Helper()
	n.cmd.Stderr = os.Stderr
	n.exited = make(chan struct{})
	out, err := n.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := n.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.cmd.Process.Kill() })
	go func() {
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			var r map[string]any
			if json.Unmarshal(sc.Bytes(), &r) == nil {
				n.mu.Lock()
				n.recs = append(n.recs, r)
				n.mu.Unlock()
			}
		}
		n.done <- n.cmd.Wait()
		close(n.exited)
	}()
}

// waitFor returns the first log record matching pred.
func (n *node) waitFor(t *testing.T, d time.Duration, pred func(map[string]any) bool) map[string]any {
	t.Helper()
	deadline := time.Now().Add(d)
	for i := 0; ; {
		n.mu.Lock()
		for ; i < len(n.recs); i++ {
			if pred(n.recs[i]) {
				r := n.recs[i]
				n.mu.Unlock()
				return r
			}
		}
		n.mu.Unlock()
		if time.Now().After(deadline) {
			t.Fatalf("%s: no matching log line within %v", n.id, d)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func progressAt(step int) func(map[string]any) bool {
	return func(r map[string]any) bool {
		s, _ := r["step"].(float64)
		return r["msg"] == "progress" && int(s) >= step
	}
}

func (n *node) wait(t *testing.T, d time.Duration) {
	t.Helper()
	select {
	case err := <-n.done:
		if err != nil {
			t.Fatalf("%s exited: %v", n.id, err)
		}
	case <-time.After(d):
		t.Fatalf("%s still running after %v", n.id, d)
	}
}

func (n *node) summary(t *testing.T) summary {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(n.dir, "summary.json"))
	if err != nil {
		t.Fatalf("%s: %v", n.id, err)
	}
	var s summary
	if err := json.Unmarshal(b, &s); err != nil {
		t.Fatalf("%s: %v", n.id, err)
	}
	return s
}

// TestScaleUpE2E: 4 trainers from a seed list train the MLP; a 5th started
// mid-run joins and takes part; all 5 end with the same parameters and the
// accuracy target.
func TestScaleUpE2E(t *testing.T) {
	c := newCluster(t)
	args := []string{"--model", "mlp", "--epochs", "3", "--min-peers", "4"}
	for i := range 4 {
		c.start(fmt.Sprintf("node-%d", i), args...)
	}
	c.nodes[0].waitFor(t, 2*time.Minute, progressAt(60))
	late := c.start("node-4", args...)
	// The newcomer's first step runs in a 5-member epoch.
	r := late.waitFor(t, 2*time.Minute, progressAt(1))
	if p, _ := r["peers"].(float64); p != 5 {
		t.Fatalf("newcomer's first step ran with %v peers, want 5", r["peers"])
	}
	for _, n := range c.nodes {
		n.wait(t, 5*time.Minute)
	}
	first := c.nodes[0].summary(t)
	for _, n := range c.nodes {
		s := n.summary(t)
		t.Logf("%s: steps %d peers %d accuracy %.4f digest %s failed steps %d", s.Node, s.Steps, s.Peers, s.TestAccuracy, s.Digest, s.FailedSteps)
		if s.Digest != first.Digest || s.Steps != first.Steps || s.Peers != 5 {
			t.Errorf("%s: digest %s steps %d peers %d; node-0: digest %s steps %d, want 5 peers", s.Node, s.Digest, s.Steps, s.Peers, first.Digest, first.Steps)
		}
		if s.TestAccuracy < 0.97 {
			t.Errorf("%s: test accuracy %.4f < 0.97", s.Node, s.TestAccuracy)
		}
	}
}

// TestResumeE2E: a run killed after a checkpoint and resumed ends with the
// same parameters as an uninterrupted run (same seeds, same peers).
func TestResumeE2E(t *testing.T) {
	c := newCluster(t)
	args := []string{"--model", "mlp", "--steps", "150", "--min-peers", "2", "--checkpoint-every", "20", "--eval-every", "1000"}
	run := func(c *cluster, extra ...string) []*node {
		var ns []*node
		for i := range 2 {
			id := fmt.Sprintf("node-%d", i)
			ns = append(ns, c.start(id, append(append([]string{}, args...), append(extra, "--checkpoint-dir", filepath.Join(c.dir, "ckpt-"+id))...)...))
		}
		return ns
	}
	for _, n := range run(c) {
		n.wait(t, 3*time.Minute)
	}
	want := c.nodes[0].summary(t).Digest

	c2 := &cluster{t: t, bin: c.bin, dir: t.TempDir(), secret: c.secret}
	ns := run(c2)
	for _, n := range ns {
		// Kill both once each has written a checkpoint and trained on.
		n.waitFor(t, 2*time.Minute, progressAt(45))
	}
	for _, n := range ns {
		n.cmd.Process.Signal(syscall.SIGKILL)
		<-n.done
	}
	// node-0 (the lowest ID, which proposes the first epoch) loses its
	// checkpoint: it must be synced from node-1, not overwrite it.
	if err := os.RemoveAll(filepath.Join(c2.dir, "ckpt-node-0")); err != nil {
		t.Fatal(err)
	}
	c2.nodes, c2.seed = nil, ""
	resumed := run(c2, "--resume")
	resumed[0].waitFor(t, time.Minute, func(r map[string]any) bool {
		return r["msg"] == "no checkpoint to resume from: starting fresh (peers that have one will sync this node)"
	})
	r := resumed[1].waitFor(t, time.Minute, func(r map[string]any) bool { return r["msg"] == "resumed" })
	t.Logf("node-1 resumed at step %v; node-0 had no checkpoint", r["step"])
	if r["step"] == "0" {
		t.Errorf("node-1 resumed at step 0")
	}
	// The checkpoint kept the membership epoch node-1 held (passed back
	// as node.Config.Held).
	if h, ok := r["held_epoch"].(float64); !ok || h < 1 {
		t.Errorf("node-1 resumed with held epoch %v, want the epoch it ran", r["held_epoch"])
	}
	for _, n := range resumed {
		n.wait(t, 3*time.Minute)
		if got := n.summary(t); got.Digest != want || got.Steps != 150 {
			t.Errorf("%s: resumed run ends at step %d with digest %s, uninterrupted %s", n.id, got.Steps, got.Digest, want)
		}
	}
}

// TestGracefulLeaveE2E: SIGTERM makes a node leave at a step boundary; the
// others continue without a failed step.
func TestGracefulLeaveE2E(t *testing.T) {
	c := newCluster(t)
	args := []string{"--model", "mlp", "--steps", "300", "--min-peers", "3", "--eval-every", "1000"}
	c.start("node-0", append([]string{"--metrics-addr", "127.0.0.1:0"}, args...)...)
	for i := 1; i < 3; i++ {
		c.start(fmt.Sprintf("node-%d", i), args...)
	}
	leaver := c.nodes[2]
	leaver.waitFor(t, 2*time.Minute, progressAt(40))
	checkMetrics(t, c.nodes[0])
	leaver.cmd.Process.Signal(syscall.SIGTERM)
	leaver.wait(t, time.Minute)
	if s := leaver.summary(t); !s.Left {
		t.Errorf("the signalled node did not report a graceful leave: %+v", s)
	}
	for _, n := range c.nodes[:2] {
		n.wait(t, 3*time.Minute)
		s := n.summary(t)
		if s.FailedSteps != 0 || s.Peers != 2 || s.Steps != 300 {
			t.Errorf("%s: %d failed steps, %d peers at the end, %d steps; want 0, 2, 300", s.Node, s.FailedSteps, s.Peers, s.Steps)
		}
	}
}

// TestRefusesInsecureAcrossHosts: no secret on a non-loopback address is
// refused with a clear message.
func TestRefusesInsecureAcrossHosts(t *testing.T) {
	bin := buildTrainer(t)
	cmd := exec.Command(bin, "--listen", "0.0.0.0:0", "--quic-listen", "0.0.0.0:0", "--steps", "1")
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "--insecure") {
		t.Fatalf("want a refusal that mentions --insecure, got %v:\n%s", err, out)
	}
}

// TestCrashE2E: a node killed mid-run (no leave) is dropped; the survivors
// agree on the next epoch and finish with identical parameters.
func TestCrashE2E(t *testing.T) {
	c := newCluster(t)
	args := []string{"--model", "mlp", "--steps", "200", "--min-peers", "3", "--eval-every", "1000"}
	for i := range 3 {
		c.start(fmt.Sprintf("node-%d", i), args...)
	}
	victim := c.nodes[2]
	victim.waitFor(t, 2*time.Minute, progressAt(40))
	start := time.Now()
	victim.cmd.Process.Signal(syscall.SIGKILL)
	<-victim.done
	c.nodes[0].waitFor(t, time.Minute, func(r map[string]any) bool {
		return r["msg"] == "membership epoch" && r["members"] == "node-0,node-1"
	})
	t.Logf("survivors formed the next epoch %v after the kill", time.Since(start).Round(time.Millisecond))
	var digests []string
	for _, n := range c.nodes[:2] {
		n.wait(t, 3*time.Minute)
		s := n.summary(t)
		if s.Steps != 200 || s.Peers != 2 {
			t.Errorf("%s: %d steps, %d peers; want 200, 2", s.Node, s.Steps, s.Peers)
		}
		digests = append(digests, s.Digest)
	}
	if digests[0] != digests[1] {
		t.Errorf("survivors disagree: %v", digests)
	}
}

// checkMetrics scrapes a node's Prometheus endpoint mid-run.
func checkMetrics(t *testing.T, n *node) {
	t.Helper()
	r := n.waitFor(t, time.Minute, func(r map[string]any) bool { return r["msg"] == "metrics" })
	resp, err := http.Get(r["addr"].(string))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for _, want := range []string{"ringtrain_steps_total{node=\"node-0\"}", "ringtrain_allreduce_seconds_bucket", "ringtrain_allreduce_busbw_bytes_per_second",
		"ringtrain_peers{node=\"node-0\"} 3", "ringtrain_connections{node=\"node-0\"} 2", "ringtrain_membership_epoch", "ringtrain_loss", "ringtrain_allreduce_sent_bytes_total"} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

// TestLocalE2E runs the README's main command, shortened: --local from the
// environment, with per-node variables set that the children must not
// inherit (a child with RINGTRAIN_LOCAL would start children of its own).
func TestLocalE2E(t *testing.T) {
	bin := buildTrainer(t)
	out := filepath.Join(t.TempDir(), "summary.json")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "--steps", "30", "--summary-json", out)
	cmd.Env = append(os.Environ(), "RINGTRAIN_LOCAL=2", "RINGTRAIN_SEEDS=127.0.0.1:9", "RINGTRAIN_METRICS_ADDR=127.0.0.1:9")
	b, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%v\n%s", err, b)
	}
	if !strings.Contains(string(b), "all peers hold bitwise-identical parameters") {
		t.Fatalf("no agreement line in:\n%s", b)
	}
	var s struct {
		Nodes      []summary `json:"nodes"`
		Consistent bool      `json:"consistent"`
	}
	raw, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, &s); err != nil || len(s.Nodes) != 2 || !s.Consistent || s.Nodes[0].Steps != 30 {
		t.Fatalf("summary %s: %v", raw, err)
	}
}

// TestLeaveWhileWaitingE2E: SIGTERM on a node still waiting for
// --min-peers ends it gracefully at once, not at a second signal.
func TestLeaveWhileWaitingE2E(t *testing.T) {
	c := newCluster(t)
	n := c.start("node-0", "--steps", "10", "--min-peers", "3")
	time.Sleep(500 * time.Millisecond) // inside its first boundary, waiting for peers
	n.cmd.Process.Signal(syscall.SIGTERM)
	n.wait(t, 15*time.Second)
	if s := n.summary(t); !s.Left || s.Steps != 0 {
		t.Errorf("summary %+v: want a graceful leave at step 0", s)
	}
}

// TestMismatchedSettingsRefusedE2E: a node started with settings that
// must match the job's but do not (how gradients travel) fails at once
// with an error naming both settings, instead of joining a ring that
// can never run a step.
func TestMismatchedSettingsRefusedE2E(t *testing.T) {
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"wire dtype", []string{"--wire-dtype", "bf16"}, "wire=bf16"},
		{"lanes", []string{"--lanes", "2"}, `"tcp lanes=2 chunk=262144"`},
		{"bucket size", []string{"--bucket-bytes", "0"}, "buckets=0"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := newCluster(t)
			c.start("node-0", "--min-peers", "2", "--steps", "5")
			odd := c.start("node-1", append([]string{"--min-peers", "2", "--steps", "5"}, tc.args...)...)
			select {
			case err := <-odd.done:
				if err == nil {
					t.Fatal("node-1 with mismatched settings exited 0")
				}
			case <-time.After(60 * time.Second):
				t.Fatal("node-1 with mismatched settings still running after 60s")
			}
			r := odd.waitFor(t, time.Second, func(r map[string]any) bool { return r["msg"] == "trainer failed" })
			if e, _ := r["err"].(string); !strings.Contains(e, "incompatible peer") || !strings.Contains(e, tc.want) {
				t.Fatalf("error %q does not say the peer is incompatible with %s", e, tc.want)
			}
			t.Logf("refused: %s", r["err"])
		})
	}
}
