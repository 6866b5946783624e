package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// perNodeFlag reports the flags --local sets for each child; the user's
// other flags are passed through unchanged.
func perNodeFlag(name string) bool {
	switch name {
	case "local", "node-id", "listen", "advertise", "quic-listen", "quic-advertise", "seeds", "summary-json",
		"log-format", "progress", "metrics-addr", "checkpoint-dir", "min-peers", "secret", "secret-file":
		return true
	}
	return false
}

// runLocal starts n trainer processes on 127.0.0.1 with an ephemeral
// secret, shows their progress, and prints a summary.
func runLocal(ctx context.Context, c *config, args []string, stdout, stderr io.Writer, tty bool, log *slog.Logger) error {
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("local: find own executable: %w", err)
	}
	tmp, err := os.MkdirTemp("", "ringtrain-local-")
	if err != nil {
		return fmt.Errorf("local: %w", err)
	}
	defer os.RemoveAll(tmp)
	secret := make([]byte, 32)
	rand.Read(secret)

	pass, err := passThrough(args)
	if err != nil {
		return err
	}
	nodes := make([]string, c.Local)
	for i := range nodes {
		nodes[i] = fmt.Sprintf("local-%d", i)
	}
	var rep reporter = &logReporter{log: log, interval: 2 * time.Second, nameNode: true}
	if tty && c.Progress != "log" {
		rep = newMultiBar(stderr, nodes)
	}
	rep.message(fmt.Sprintf("starting %d peers on 127.0.0.1 (ephemeral cluster secret, model %s, batch %d per peer)", c.Local, c.Model, c.Batch))

	start := time.Now()
	children := make([]*exec.Cmd, c.Local)
	var wg sync.WaitGroup
	errs := make([]error, c.Local)
	seedc := make(chan string, 1)
	seed := ""
	for i, id := range nodes {
		a := append([]string{
			"--node-id", id, "--listen", "127.0.0.1:0", "--quic-listen", "127.0.0.1:0",
			"--log-format", "json", "--progress", "log", "--min-peers", fmt.Sprint(c.Local),
			"--summary-json", filepath.Join(tmp, id+".json"),
		}, pass...)
		if seed != "" {
			a = append(a, "--seeds", seed)
		}
		if c.CheckpointDir != "" {
			a = append(a, "--checkpoint-dir", filepath.Join(c.CheckpointDir, id))
		}
		cmd := exec.CommandContext(ctx, exe, a...)
		cmd.Env = append(childEnv(os.Environ()), envName("secret")+"="+hex.EncodeToString(secret))
		// Its own process group: a terminal's Ctrl-C reaches only the
		// parent, which forwards one SIGTERM (a graceful leave), not two.
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		cmd.Stderr = prefixWriter(stderr, id)
		// Children leave gracefully on SIGTERM; the parent forwards the
		// user's interrupt as SIGTERM.
		cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
		cmd.WaitDelay = 30 * time.Second
		out, err := cmd.StdoutPipe()
		if err == nil {
			err = cmd.Start()
		}
		if err != nil {
			stopChildren(children)
			wg.Wait()
			return fmt.Errorf("local: start %s: %w", id, err)
		}
		children[i] = cmd
		wg.Go(func() {
			follow(out, id, rep, i == 0, seedc)
			if err := cmd.Wait(); err != nil {
				errs[i] = fmt.Errorf("%s: %w", id, err)
			}
		})
		if i == 0 {
			// The others join through the first node's gossip address,
			// which it picked itself (port 0) and logged.
			select {
			case seed = <-seedc:
			case <-time.After(30 * time.Second):
				stopChildren(children)
				wg.Wait()
				return errors.New("local: the first peer did not report its gossip address within 30 s")
			case <-ctx.Done():
				wg.Wait()
				return ctx.Err()
			}
		}
	}
	wg.Wait()
	rep.close()
	wall := time.Since(start)
	return printLocalSummary(stdout, tmp, nodes, wall, c.SummaryJSON, errors.Join(errs...))
}

// childEnv drops the environment twins of the per-node flags: a child
// must not inherit, say, RINGTRAIN_LOCAL (it would start children of its
// own) or the user's RINGTRAIN_SEEDS.
func childEnv(env []string) []string {
	var out []string
	fs := newFlagSet(&config{}, io.Discard)
	drop := map[string]bool{}
	fs.VisitAll(func(f *flag.Flag) {
		if perNodeFlag(f.Name) {
			drop[envName(f.Name)] = true
		}
	})
	for _, kv := range env {
		k, _, _ := strings.Cut(kv, "=")
		if !drop[k] {
			out = append(out, kv)
		}
	}
	return out
}

// stopChildren kills the children started so far.
func stopChildren(children []*exec.Cmd) {
	for _, c := range children {
		if c != nil && c.Process != nil {
			c.Process.Kill()
		}
	}
}

// passThrough returns the user's flags other than the per-node ones.
func passThrough(args []string) ([]string, error) {
	c := &config{}
	fs := newFlagSet(c, io.Discard)
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	var out []string
	fs.Visit(func(f *flag.Flag) {
		if !perNodeFlag(f.Name) {
			out = append(out, "--"+f.Name+"="+f.Value.String())
		}
	})
	return out, nil
}

// follow reads a child's JSON log: progress lines feed the display, the
// gossip address of the first node is handed to the parent, other lines
// are shown as messages.
func follow(r io.Reader, id string, rep reporter, first bool, seedc chan<- string) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var rec map[string]any
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			rep.message(id + ": " + sc.Text())
			continue
		}
		msg, _ := rec["msg"].(string)
		switch msg {
		case "progress":
			rep.update(parseProgress(rec))
		case "listening":
			if addr, ok := rec["gossip"].(string); ok && first {
				select {
				case seedc <- addr:
				default:
				}
			}
		default:
			var attrs []any
			for k, v := range rec {
				if k != "time" && k != "level" && k != "msg" {
					attrs = append(attrs, k, v)
				}
			}
			rep.message(id+": "+msg, attrs...)
		}
	}
}

func parseProgress(rec map[string]any) progress {
	num := func(k string) float64 { v, _ := rec[k].(float64); return v }
	node, _ := rec["node"].(string)
	return progress{
		Node: node, Step: int(num("step")), TotalSteps: int(num("total_steps")), DataEpoch: int(num("data_epoch")),
		Loss: num("loss"), Accuracy: num("accuracy"), SamplesPerS: num("samples_per_s"), Peers: int(num("peers")),
		MemberEpoch: uint64(num("membership_epoch")), ETA: time.Duration(num("eta_s") * float64(time.Second)),
	}
}

// prefixWriter prefixes each line written to w with the node's ID.
func prefixWriter(w io.Writer, id string) io.Writer {
	pr, pw := io.Pipe()
	go func() {
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			fmt.Fprintf(w, "[%s] %s\n", id, sc.Text())
		}
		io.Copy(io.Discard, pr) // never block the child, even after an overlong line
	}()
	return pw
}

func printLocalSummary(w io.Writer, dir string, nodes []string, wall time.Duration, out string, runErr error) error {
	var sums []summary
	for _, id := range nodes {
		b, err := os.ReadFile(filepath.Join(dir, id+".json"))
		if err != nil {
			continue
		}
		var s summary
		if json.Unmarshal(b, &s) == nil {
			sums = append(sums, s)
		}
	}
	fmt.Fprintf(w, "\nringtrain --local %d: %d peers finished in %s\n", len(nodes), len(sums), wall.Round(time.Second))
	fmt.Fprintf(w, "%-10s %7s %6s %9s %11s %12s  %s\n", "node", "steps", "peers", "accuracy", "samples/s", "wall", "parameter digest")
	digests := map[string]bool{}
	for _, s := range sums {
		fmt.Fprintf(w, "%-10s %7d %6d %8.2f%% %11.0f %12s  %s\n", s.Node, s.Steps, s.Peers, 100*s.TestAccuracy, s.SamplesPerSec, time.Duration(s.WallSeconds*float64(time.Second)).Round(time.Second), s.Digest)
		digests[s.Digest] = true
	}
	switch {
	case len(sums) == 0:
	case len(digests) == 1:
		fmt.Fprintln(w, "all peers hold bitwise-identical parameters")
	default:
		fmt.Fprintf(w, "WARNING: peers disagree on the parameters (%d distinct digests)\n", len(digests))
	}
	if out != "" && len(sums) > 0 {
		b, _ := json.MarshalIndent(map[string]any{"nodes": sums, "wall_seconds": wall.Seconds(), "consistent": len(digests) == 1}, "", "  ")
		if err := os.WriteFile(out, b, 0o644); err != nil {
			return errors.Join(runErr, fmt.Errorf("--summary-json: %w", err))
		}
	}
	if runErr != nil {
		return runErr
	}
	if len(sums) != len(nodes) {
		return fmt.Errorf("local: %d of %d peers wrote no summary", len(nodes)-len(sums), len(nodes))
	}
	if len(digests) != 1 {
		return errors.New("local: peers finished with different parameters")
	}
	return nil
}

// summary is what --summary-json holds for one node.
type summary struct {
	Node          string  `json:"node"`
	TestAccuracy  float64 `json:"test_accuracy"`
	Steps         uint64  `json:"steps"`
	Peers         int     `json:"peers"`
	MemberEpoch   uint64  `json:"membership_epoch"`
	WallSeconds   float64 `json:"wall_seconds"`
	SamplesPerSec float64 `json:"samples_per_sec"`
	Digest        string  `json:"parameter_digest"`
	Model         string  `json:"model"`
	FailedSteps   int     `json:"failed_steps"`
	Checkpoint    string  `json:"checkpoint,omitempty"`
	Left          bool    `json:"left,omitempty"`
}
