package trainstep

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/ringtrain/ringtrain/bench/cluster"
)

// TestMain runs the test binary as the worker subcommand when a process
// runner under test starts it as a peer ("<its executable> worker …").
func TestMain(m *testing.M) {
	if ran, code := cluster.WorkerMain(os.Args, map[string]cluster.Job{JobName: Job}, os.Stderr); ran {
		os.Exit(code)
	}
	os.Exit(m.Run())
}

func TestParseSize(t *testing.T) {
	cases := []struct {
		in   string
		want int64
		bad  bool
	}{
		{"0", 0, false},
		{"256KiB", 256 << 10, false},
		{"4MiB", 4 << 20, false},
		{" 25M ", 25 << 20, false},
		{"100", 100, false},
		{"-1", 0, true},
		{"big", 0, true},
	}
	for _, c := range cases {
		t.Run(c.in, func(t *testing.T) {
			got, err := parseSize(c.in)
			if (err != nil) != c.bad || got != c.want {
				t.Fatalf("parseSize(%q) = %d, %v; want %d, error %v", c.in, got, err, c.want, c.bad)
			}
		})
	}
}

func TestParseFlags(t *testing.T) {
	cases := []struct {
		name string
		args []string
		err  string // substring of the error; "" for none
	}{
		{"defaults", nil, ""},
		{"unknown model", []string{"--models", "resnet"}, "unknown model"},
		{"bad bucket", []string{"--bucket-bytes", "0,x"}, "--bucket-bytes"},
		{"tcp", []string{"--transport", "tcp"}, ""},
		{"quic", []string{"--transport", "quic"}, ""},
		{"bad transport", []string{"--transport", "udp"}, "--transport must be tcp, quic or mem"},
		{"bad rate", []string{"--links", "fast"}, "fast"},
		{"no steps", []string{"--steps", "0"}, "--steps"},
		{"bad wire", []string{"--wire-dtype", "int8"}, "int8"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			o, err := parseFlags(c.args)
			switch {
			case c.err == "" && err != nil:
				t.Fatal(err)
			case c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)):
				t.Fatalf("error %v, want one containing %q", err, c.err)
			case c.err == "" && (len(o.models) != 2 || len(o.buckets) != 5 || o.buckets[0] != 0 || o.buckets[4] != 25<<20):
				t.Fatalf("defaults: models %v, buckets %v", o.models, o.buckets)
			}
		})
	}
}

// TestSummarize: a step's time is the slowest rank's, the row the median
// over steps; peers that end with different parameters are an error.
func TestSummarize(t *testing.T) {
	o := &options{transport: "mem", links: "loopback", n: 2, batch: 8}
	res := []peerResult{
		{StepS: []float64{0.1, 0.5, 0.2}, CommWaitS: []float64{0.01, 0.03, 0.02}, Buckets: 2, GradBytes: 40, Digest: "a"},
		{StepS: []float64{0.3, 0.1, 0.1}, Digest: "a"},
	}
	cpu := 0.6
	r, err := summarize(o, config{model: "mlp", bucketBytes: 1 << 20}, res, cpu)
	if err != nil {
		t.Fatal(err)
	}
	// Slowest per step: 0.3, 0.5, 0.2; median 0.3.
	if r.StepMS != 300 || r.StepsPerS != 1/0.3 || r.SamplesPerS != 16/0.3 || r.CommWaitMS != 20 || r.CPUPerStep != cpu/3 ||
		r.Buckets != 2 || r.Links != "unlimited" {
		t.Fatalf("row %+v", r)
	}
	res[1].Digest = "b"
	if _, err := summarize(o, config{model: "mlp"}, res, 0); err == nil || !strings.Contains(err.Error(), "differ") {
		t.Fatalf("diverged peers: error %v", err)
	}
}

// TestRunMem: real trainer steps on 2 in-memory peers, unbucketed and
// bucketed, end with identical parameters and report every timed step.
func TestRunMem(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	o := &options{n: 2, batch: 4, warmup: 1, steps: 2, chunk: 64 << 10, links: "loopback", transport: "mem", wire: "fp32"}
	for _, c := range []struct {
		bucketBytes, buckets int
	}{
		{0, 0},
		// 64 KiB: the output layer (5 KB) does not fit with the next (131 KB),
		// and each other layer is larger than a bucket: 3 buckets.
		{64 << 10, 3},
	} {
		cfg := config{model: "mlp", bucketBytes: c.bucketBytes}
		res, _, err := runMem(ctx, o, cfg)
		if err != nil {
			t.Fatal(err)
		}
		r, err := summarize(o, cfg, res, 0)
		if err != nil {
			t.Fatal(err)
		}
		if len(res[0].StepS) != 2 || r.GradBytes != 4*235146 || r.Buckets != c.buckets {
			t.Fatalf("bucket %d: %d steps, %d gradient bytes, %d buckets; want 2, %d, %d", c.bucketBytes, len(res[0].StepS), r.GradBytes, r.Buckets, 4*235146, c.buckets)
		}
	}
}

// TestRunProcs: real trainer steps on 2 peer processes on loopback, over
// each transport a peer process can use, unbucketed and bucketed, end with
// identical parameters (summarize checks the digests) and report every
// timed step and their CPU.
func TestRunProcs(t *testing.T) {
	for _, transport := range []string{"tcp", "quic"} {
		t.Run(transport, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			o := &options{n: 2, batch: 4, warmup: 1, steps: 2, chunk: 64 << 10, links: "loopback", transport: transport, wire: "fp32"}
			q, err := newProcRunner(ctx, o)
			if err != nil {
				t.Fatal(err)
			}
			defer func() {
				if err := q.Close(); err != nil {
					t.Error(err)
				}
			}()
			for _, c := range []struct {
				name                 string
				bucketBytes, buckets int
			}{
				{"unbucketed", 0, 0},
				{"64KiB buckets", 64 << 10, 3},
			} {
				t.Run(c.name, func(t *testing.T) {
					cfg := config{model: "mlp", bucketBytes: c.bucketBytes}
					res, cpu, err := q.run(ctx, cfg)
					if err != nil {
						t.Fatal(err)
					}
					r, err := summarize(o, cfg, res, cpu)
					if err != nil {
						t.Fatal(err)
					}
					if len(res[0].StepS) != 2 || r.Buckets != c.buckets || r.Transport != transport || !(cpu > 0) {
						t.Fatalf("%d steps, %d buckets, transport %q, CPU %v s; want 2, %d, %q, > 0", len(res[0].StepS), r.Buckets, r.Transport, cpu, c.buckets, transport)
					}
				})
			}
		})
	}
}
