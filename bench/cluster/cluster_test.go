package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/ringtrain/ringtrain/transport"
)

// testJobs are the jobs the test binary runs as the worker subcommand.
func testJobs() map[string]Job {
	return map[string]Job{
		// pass: every peer sends its ID to the next peer of a ring of
		// Args peers and returns what the previous one sent it.
		"pass": func(ctx context.Context, ep transport.Endpoint, raw json.RawMessage) (any, error) {
			var ring []string
			if err := json.Unmarshal(raw, &ring); err != nil {
				return nil, err
			}
			me := -1
			for i, id := range ring {
				if id == ep.ID() {
					me = i
				}
			}
			if me < 0 {
				return nil, fmt.Errorf("%s not in %v", ep.ID(), ring)
			}
			tag := transport.Tag{Epoch: 1, Op: 1}
			next, err := ep.Conn(ctx, ring[(me+1)%len(ring)])
			if err != nil {
				return nil, err
			}
			prev, err := ep.Conn(ctx, ring[(me+len(ring)-1)%len(ring)])
			if err != nil {
				return nil, err
			}
			errc := make(chan error, 1)
			go func() { errc <- next.Send(ctx, tag, []byte(ep.ID())) }()
			buf := make([]byte, 64)
			n, err := prev.Recv(ctx, tag, buf)
			if serr := <-errc; err == nil {
				err = serr
			}
			return string(buf[:n]), err
		},
		"fail": func(context.Context, transport.Endpoint, json.RawMessage) (any, error) {
			return nil, errors.New("job failed on purpose")
		},
	}
}

func TestMain(m *testing.M) {
	if ran, code := WorkerMain(os.Args, testJobs(), os.Stderr); ran {
		os.Exit(code)
	}
	os.Exit(m.Run())
}

// workers builds the peer processes of a job on loopback, one per ID.
func workers(ctx context.Context, t *testing.T, cl *Cluster, job string, ids []string, args any) ([]string, []*exec.Cmd) {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	sec, err := NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	addrs := map[string]string{}
	for i, id := range ids {
		if addrs[id], err = cl.Addr(i, 0); err != nil {
			t.Fatal(err)
		}
	}
	raw, err := json.Marshal(args)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	var cmds []*exec.Cmd
	for i, id := range ids {
		c, err := cl.WorkerCmd(ctx, i, exe, Spec{Job: job, ID: id, Addrs: addrs, Secret: sec, Timeout: 30 * time.Second, Args: raw})
		if err != nil {
			t.Fatal(err)
		}
		names, cmds = append(names, id), append(cmds, c)
	}
	return names, cmds
}

// TestWorkersRun runs three worker processes on loopback through the whole
// protocol: each one's result is what its ring predecessor sent over QUIC.
func TestWorkersRun(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cl, err := New(ctx, "loopback", 3)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ids := []string{"a", "b", "c"}
	names, cmds := workers(ctx, t, cl, "pass", ids, ids)
	got := make([]string, len(ids))
	out := []any{&got[0], &got[1], &got[2]}
	if err := RunProcs(ctx, names, cmds, out); err != nil {
		t.Fatal(err)
	}
	if want := []string{"c", "a", "b"}; strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("results %q, want %q", got, want)
	}
	for _, c := range cmds {
		if c.ProcessState == nil || !c.ProcessState.Success() {
			t.Fatalf("%v: not reaped or failed: %v", c.Args[:2], c.ProcessState)
		}
	}
}

// TestRunProcsReportsFailure: a peer that fails before READY fails the run
// as retryable (ErrNotReady) with its own message; one whose job fails after
// GO fails it with the job's message, not as retryable; nothing is left
// running either way.
func TestRunProcsReportsFailure(t *testing.T) {
	for _, tc := range []struct {
		name, job, want string
		notReady        bool
	}{
		{"unknown job", "nosuchjob", `unknown job "nosuchjob"`, true},
		{"job fails", "fail", "job failed on purpose", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			cl, err := New(ctx, "loopback", 1)
			if err != nil {
				t.Fatal(err)
			}
			names, cmds := workers(ctx, t, cl, tc.job, []string{"a"}, nil)
			var r any
			err = RunProcs(ctx, names, cmds, []any{&r})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want the peer's own message %q", err, tc.want)
			}
			if errors.Is(err, ErrNotReady) != tc.notReady {
				t.Fatalf("err = %v: ErrNotReady %v, want %v", err, !tc.notReady, tc.notReady)
			}
			if cmds[0].ProcessState == nil {
				t.Fatal("process not reaped")
			}
		})
	}
}

// TestWorkerMain: only a worker command line runs the worker; a bad spec
// ends it with exit code 1 and the error on stderr.
func TestWorkerMain(t *testing.T) {
	for _, tc := range []struct {
		name     string
		args     []string
		ran      bool
		code     int
		inStderr string
	}{
		{"no subcommand", []string{"bench"}, false, 0, ""},
		{"another subcommand", []string{"bench", "allreduce"}, false, 0, ""},
		{"worker with a bad spec", []string{"bench", WorkerCommand, "--spec", "{"}, true, 1, "unexpected end of JSON input"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stderr strings.Builder
			ran, code := WorkerMain(tc.args, testJobs(), &stderr)
			if ran != tc.ran || code != tc.code || !strings.Contains(stderr.String(), tc.inStderr) {
				t.Fatalf("WorkerMain(%q) = %v, %d, stderr %q; want %v, %d, stderr with %q", tc.args, ran, code, stderr.String(), tc.ran, tc.code, tc.inStderr)
			}
		})
	}
}
