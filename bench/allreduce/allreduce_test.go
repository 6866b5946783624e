package allreduce

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/ringtrain/ringtrain/bench/cluster"
	"github.com/ringtrain/ringtrain/bench/netns"
	"github.com/ringtrain/ringtrain/bench/peers"
	"github.com/ringtrain/ringtrain/collective"
)

// subcommandEnv makes the test binary run one bench subcommand instead of
// the tests, so tests can start real peer processes.
const subcommandEnv = "RINGTRAIN_BENCH_TEST_SUBCOMMAND"

func TestMain(m *testing.M) {
	name, args := os.Getenv(subcommandEnv), os.Args[1:]
	// The driver under test starts peers as "<its executable> worker …":
	// here that is the test binary.
	if len(os.Args) > 1 && (os.Args[1] == cluster.WorkerCommand || os.Args[1] == RawQUICCommand) {
		name, args = os.Args[1], os.Args[2:]
	}
	if name != "" {
		var err error
		switch name {
		case cluster.WorkerCommand:
			err = cluster.RunWorker(context.Background(), args, map[string]cluster.Job{JobName: Job})
		case RawQUICCommand:
			err = RunRawQUIC(context.Background(), args)
		default:
			err = errors.New("unknown subcommand " + name)
		}
		if err != nil {
			os.Stderr.WriteString(err.Error() + "\n")
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// subcommand is a command running the test binary as "bench name args...".
func subcommand(ctx context.Context, t *testing.T, name string, args ...string) *exec.Cmd {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	c := exec.CommandContext(ctx, exe, args...)
	c.Env = append(os.Environ(), subcommandEnv+"="+name)
	return c
}

func TestMemJobsExact(t *testing.T) {
	spec := measureSpec{Sizes: []int64{4, 4096, 100 << 10}, Warmup: 1, Iters: 2, OpTimeout: 10 * time.Second}
	cases := []struct {
		name    string
		system  string
		n, p    int
		chunk   int
		rate    float64
		workers int
		wire    string // ringtrain's wire dtype
		bucket  int    // ringtrain's bucket bytes
	}{
		{"ring n=1", "ringtrain", 1, 0, 0, 0, 1, "", 0},
		{"ring n=3", "ringtrain", 3, 0, 4096, 0, 3, "", 0},
		{"ring n=5 rate-limited", "ringtrain", 5, 0, 16384, 64 << 20, 5, "", 0},
		{"ring n=4 bf16", "ringtrain", 4, 0, 4096, 0, 4, "bf16", 0},
		{"ring n=3 fp16 bucketed", "ringtrain", 3, 0, 4096, 0, 3, "fp16", 8192},
		{"ring n=4 bucketed", "ringtrain", 4, 0, 2048, 0, 4, "fp32", 12 << 10},
		{"ps n=4 P=2", "ps", 4, 2, 8192, 0, 4, "", 0},
		{"ps n=3 P=1 rate-limited", "ps", 3, 1, 0, 64 << 20, 3, "", 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			// measure checks every result exactly (checkSum) and fails
			// the job otherwise.
			roles := jobRoles(c.system, c.n, c.p, c.chunk)
			for i := range roles {
				roles[i].Wire, roles[i].BucketBytes = c.wire, c.bucket
			}
			workers, cpu, err := runMemJob(ctx, roles, c.rate, spec)
			if err != nil {
				t.Fatal(err)
			}
			if len(workers) != c.workers || len(cpu) != len(spec.Sizes) {
				t.Fatalf("%d worker results, %d cpu figures", len(workers), len(cpu))
			}
			for _, w := range workers {
				if len(w.Times) != len(spec.Sizes) || len(w.Times[0]) != spec.Iters {
					t.Fatalf("times %v", w.Times)
				}
			}
		})
	}
}

func TestCheckSumDetectsWrongResult(t *testing.T) {
	buf := make([]float32, 10)
	for r := 0; r < 3; r++ {
		in := make([]float32, 10)
		fillInput(in, r)
		for i := range buf {
			buf[i] += in[i]
		}
	}
	if err := checkSum(buf, 3, collective.Float32); err != nil {
		t.Fatal(err)
	}
	// Over a 16-bit wire an error within the bound passes and one beyond
	// it fails; over fp32 any error fails.
	gamma, tau := collective.BFloat16.ErrorBound(3)
	want := float64(buf[7])
	for _, tc := range []struct {
		name string
		wire collective.DType
		err  float64
		ok   bool
	}{
		{"fp32 off by one ulp", collective.Float32, want * 0x1p-23, false},
		{"bf16 within the bound", collective.BFloat16, 0.5 * (gamma*want + tau), true},
		{"bf16 beyond the bound", collective.BFloat16, 2 * (gamma*want + tau), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := slices.Clone(buf)
			b[7] = float32(want + tc.err)
			if err := checkSum(b, 3, tc.wire); (err == nil) != tc.ok {
				t.Fatalf("checkSum = %v, want ok %v", err, tc.ok)
			}
		})
	}
}

// TestRawQUICReference runs the reference transfer between two real
// processes on loopback through the driver's READY/GO protocol.
func TestRawQUICReference(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cl, err := cluster.New(ctx, "loopback", 2)
	if err != nil {
		t.Fatal(err)
	}
	addr, err := cl.Addr(1, 1)
	if err != nil {
		t.Fatal(err)
	}
	recv := subcommand(ctx, t, "rawquic", "--role", "recv", "--addr", addr)
	send := subcommand(ctx, t, "rawquic", "--role", "send", "--addr", addr, "--duration", "200ms")
	bytes, goodput, cpuPerGiB, err := rawQUICRef(ctx, recv, send)
	if err != nil {
		t.Fatal(err)
	}
	if bytes <= 0 || goodput <= 0 || cpuPerGiB <= 0 {
		t.Fatalf("goodput %v B/s, %v CPU-s/GiB", goodput, cpuPerGiB)
	}
}

// TestPeersLoopback runs OpenMPI and gloo with two ranks on loopback when
// they are installed: their programs check every result exactly.
func TestPeersLoopback(t *testing.T) {
	// Room for runPeer's retries: importing torch alone can take most of
	// cluster.ReadyTimeout on a loaded 2-core machine.
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Second)
	defer cancel()
	spec := measureSpec{Sizes: []int64{4096, 1 << 20}, Warmup: 1, Iters: 2, OpTimeout: 20 * time.Second}
	cfg := peers.Config{Dir: t.TempDir(), Sizes: spec.Sizes, Warmup: spec.Warmup, Iters: spec.Iters, OpTimeout: spec.OpTimeout}
	cl, err := cluster.New(ctx, "loopback", 2)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"openmpi", "gloo"} {
		t.Run(name, func(t *testing.T) {
			var r *peers.Runner
			var err error
			if name == "openmpi" {
				r, err = peers.NewMPI(ctx, cfg)
			} else {
				r, err = peers.NewGloo(ctx, cfg)
			}
			if err != nil {
				t.Skip(err)
			}
			workers, cpu, err := runPeer(ctx, cl, r, 2, spec)
			if err != nil {
				t.Fatal(err)
			}
			if len(workers) == 0 || len(cpu) != len(spec.Sizes) {
				t.Fatalf("%d results, cpu %v", len(workers), cpu)
			}
			for _, w := range workers {
				if len(w.Times) != len(spec.Sizes) || len(w.Times[1]) != spec.Iters || w.Times[1][0] <= 0 {
					t.Fatalf("times %v", w.Times)
				}
			}
		})
	}
}

// TestShapedLinksEndToEnd runs the whole driver with peer processes in
// network namespaces behind shaped links: the reference, ringtrain and the
// parameter server over transport/quic (needs root).
func TestShapedLinksEndToEnd(t *testing.T) {
	if err := netns.CheckRoot(); err != nil {
		t.Skip(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	f, err := parseAllReduceFlags([]string{"--links", "200mbit", "--n", "3", "--sizes", "4KiB,256KiB", "--warmup", "1", "--iters", "2",
		"--systems", "ringtrain,ps", "--servers", "2", "--ref-duration", "300ms", "--op-timeout", "20s"})
	if err != nil {
		t.Fatal(err)
	}
	spec := measureSpec{Sizes: f.sizes, Warmup: f.warmup, Iters: f.iters, OpTimeout: f.opTimeout}
	rows, err := allReduceProcs(ctx, f, spec)
	if err != nil {
		t.Fatal(err)
	}
	var systems []string
	for _, r := range rows {
		systems = append(systems, r.System)
		if r.BusBW <= 0 {
			t.Errorf("%s n=%d %d B: busbw %v", r.System, r.N, r.Bytes, r.BusBW)
		}
		// Nothing beats the link: busbw of a transfer much larger than
		// the token bucket's burst stays under the tbf rate (200 Mbit/s
		// = 25 MB/s).
		if r.Bytes >= 256<<10 && r.BusBW > 25e6 {
			t.Errorf("%s n=%d %d B: busbw %.0f B/s above the link rate", r.System, r.N, r.Bytes, r.BusBW)
		}
	}
	if want := []string{"rawquic", "ringtrain", "ringtrain", "ps", "ps"}; !slices.Equal(systems, want) {
		t.Fatalf("rows %v, want %v", systems, want)
	}
	if left, _ := netns.List(context.Background(), netns.NamePrefix+strconv.Itoa(os.Getpid())+"-"); len(left) != 0 {
		t.Fatalf("namespaces left behind: %v", left)
	}
}

// TestLanesLoopback runs the driver over transport/tcp on loopback with
// --lanes 1,3: both jobs' peer processes reduce (the workers check the
// sums) and their rows are named apart. 1 MiB at 256 KiB chunks on 2 peers
// is one chunk per lane and peer, so the 3-lane job splits.
func TestLanesLoopback(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	f, err := parseAllReduceFlags([]string{"--links", "loopback", "--transport", "tcp", "--n", "2", "--sizes", "4KiB,3MiB",
		"--warmup", "1", "--iters", "2", "--systems", "ringtrain", "--lanes", "1,3", "--ref-duration", "0", "--op-timeout", "20s"})
	if err != nil {
		t.Fatal(err)
	}
	spec := measureSpec{Sizes: f.sizes, Warmup: f.warmup, Iters: f.iters, OpTimeout: f.opTimeout}
	rows, err := allReduceProcs(ctx, f, spec)
	if err != nil {
		t.Fatal(err)
	}
	var systems []string
	for _, r := range rows {
		systems = append(systems, r.Label())
		if r.BusBW <= 0 {
			t.Errorf("%s n=%d %d B: busbw %v", r.Label(), r.N, r.Bytes, r.BusBW)
		}
	}
	if want := []string{"ringtrain", "ringtrain", "ringtrain-lanes3", "ringtrain-lanes3"}; !slices.Equal(systems, want) {
		t.Fatalf("rows %v, want %v", systems, want)
	}
}

func TestLanesFlag(t *testing.T) {
	tests := []struct {
		name string
		args []string
		ok   bool
	}{
		{"default", nil, true},
		{"list on tcp", []string{"--lanes", "1,2,4"}, true},
		{"over 16", []string{"--lanes", "17"}, false},
		{"quic", []string{"--transport", "quic", "--lanes", "2"}, false},
		{"quic one lane", []string{"--transport", "quic", "--lanes", "1"}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseAllReduceFlags(tt.args)
			if (err == nil) != tt.ok {
				t.Fatalf("%v: %v, want ok=%v", tt.args, err, tt.ok)
			}
		})
	}
}
