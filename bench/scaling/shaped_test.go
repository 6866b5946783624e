package scaling

import (
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/ringtrain/ringtrain/bench/cluster"
	"github.com/ringtrain/ringtrain/bench/netns"
	"github.com/ringtrain/ringtrain/bench/profile"
	"github.com/ringtrain/ringtrain/bench/sim"
	"github.com/ringtrain/ringtrain/collective"
)

// TestMain runs the test binary as the worker subcommand when the emulation
// under test starts it as a peer process ("<its executable> worker …").
func TestMain(m *testing.M) {
	if ran, code := cluster.WorkerMain(os.Args, map[string]cluster.Job{JobName: Job}, os.Stderr); ran {
		os.Exit(code)
	}
	os.Exit(m.Run())
}

func TestEmuRate(t *testing.T) {
	for _, tc := range []struct {
		name        string
		link, scale float64
		want        string
		bits        float64
	}{
		{"25G/2000", 25e9, 2000, "12500kbit", 12.5e6},
		{"10G/1000", 10e9, 1000, "10000kbit", 10e6},
		{"rounds to kbit", 25e9, 3000, "8333kbit", 8.333e6},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, bits, err := emuRate(tc.link, tc.scale)
			if err != nil || s != tc.want || bits != tc.bits {
				t.Fatalf("emuRate = %q, %v, %v; want %q, %v", s, bits, err, tc.want, tc.bits)
			}
		})
	}
}

func TestCheckAvg(t *testing.T) {
	for _, n := range []int{1, 2, 3, 8} {
		t.Run(fmt.Sprintf("n=%d", n), func(t *testing.T) {
			// The ranks' inputs, summed and divided as collective.Avg does.
			sum := make([]float32, 23)
			in := make([]float32, len(sum))
			for r := range n {
				fillInput(in, r)
				for i := range sum {
					sum[i] += in[i]
				}
			}
			for i := range sum {
				sum[i] /= float32(n)
			}
			if err := checkAvg(sum, n); err != nil {
				t.Fatal(err)
			}
			sum[7] += 0.5
			if err := checkAvg(sum, n); err == nil {
				t.Fatal("a wrong element passed")
			}
		})
	}
}

func TestSummarizeShaped(t *testing.T) {
	f, err := profile.Load(testProfile)
	if err != nil {
		t.Fatal(err)
	}
	p, err := f.Find("resnet50", "")
	if err != nil {
		t.Fatal(err)
	}
	c := emuConfig{prof: p, n: 2, scale: 1000, chunkBytes: 4096, mode: "bucketed", bucketBytes: 25e6, steps: 3}
	// Rank 0's steps 0.25, 0.125, 0.5 s (median 0.25 s, 0.875 s in all);
	// both peers used 0.875 CPU-s together.
	run, err := summarizeShaped(c, "quic-shaped", 12.5e6, 1<<20, []emuWorkerResult{
		{StepS: []float64{0.25, 0.125, 0.5}, CPUS: 0.5},
		{StepS: []float64{0.5, 0.25, 0.125}, CPUS: 0.375},
	})
	if err != nil {
		t.Fatal(err)
	}
	want := float64(2*p.BatchPerGPU) / 0.25
	if run.MeasuredImagesPerSec != want || run.Backend != "quic-shaped" || run.BucketBytes != 25e3 || !run.Overlap {
		t.Fatalf("record %+v, want %v images/s, quic-shaped, 25000 B buckets", run.Emulated, want)
	}
	if run.CoresPerPeer != 0.5 {
		t.Fatalf("cores per peer %v, want 0.875/2/0.875 = 0.5", run.CoresPerPeer)
	}
	// Each peer sent 3 steps × 4 MiB × 2·1/2 = 12 MiB and used 0.4375 CPU-s.
	if got := run.CPUPerGiB; got != 0.4375*1024/12 {
		t.Fatalf("CPU-s per GiB %v, want %v", got, 0.4375*1024/12)
	}
	if _, err := summarizeShaped(c, "quic-shaped", 12.5e6, 1<<20, []emuWorkerResult{{}}); err == nil {
		t.Fatal("no steps: want an error")
	}
	_, err = summarizeShaped(c, "quic-shaped", 12.5e6, 1<<20, []emuWorkerResult{{StepS: []float64{1}, Digest: 7}, {StepS: []float64{1}, Digest: 8}})
	if want := "emulate resnet50 n=2: rank 1's parameters differ from rank 0's (digest 0000000000000008 vs 0000000000000007)"; err == nil || err.Error() != want {
		t.Fatalf("digests 7 and 8: %v, want %q", err, want)
	}
}

// TestShapedEmulation runs real peer processes (this test binary as
// "emuworker") over each shaped backend's transport through shaped
// namespaces. Every worker checks each step's average exactly; here the step
// must also take at least the compute plus, without overlap, the ring's
// bytes at the shaped peak rate (which fails if a link bursts or is not
// shaped). Over QUIC both step drivers: the real trainer over emumodel
// (whose peers' digests must agree) and the bench's own step; over TCP the
// trainer, on the cases that differ in ring size, overlap and wire.
func TestShapedEmulation(t *testing.T) {
	if err := netns.CheckRoot(); err != nil {
		t.Skip(err)
	}
	f, err := profile.Load(testProfile)
	if err != nil {
		t.Fatal(err)
	}
	type emuCase struct {
		model, mode string
		n           int
		wire        collective.DType
	}
	for _, bc := range []struct {
		backend string
		drivers []string
		cases   []emuCase
	}{
		{"quic-shaped", []string{stepTrainer, stepBench}, []emuCase{
			{"resnet50", "none", 1, collective.Float32},
			{"resnet50", "none", 3, collective.Float32},
			{"vgg16", "bucketed", 2, collective.Float32},
			{"inception_v3", "bucketed", 3, collective.BFloat16},
		}},
		{"tcp-shaped", []string{stepTrainer}, []emuCase{
			{"resnet50", "none", 3, collective.Float32},
			{"inception_v3", "bucketed", 3, collective.BFloat16},
		}},
	} {
		t.Run(bc.backend, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			const link, scale = 25e9, 2000
			q, err := newShapedEmulator(ctx, bc.backend, link, scale, 3)
			if err != nil {
				t.Fatal(err)
			}
			defer func() {
				if err := q.Close(); err != nil {
					t.Error(err)
				}
			}()
			for _, tc := range bc.cases {
				for _, driver := range bc.drivers {
					t.Run(fmt.Sprintf("%s/%s/%s/%v/n=%d", driver, tc.model, tc.mode, tc.wire, tc.n), func(t *testing.T) {
						p, err := f.Find(tc.model, "")
						if err != nil {
							t.Fatal(err)
						}
						c := emuConfig{prof: p, n: tc.n, linkBits: link, scale: scale, chunkBytes: 16 << 10,
							mode: tc.mode, bucketBytes: 25e6, wire: tc.wire, steps: 2, driver: driver}
						run, err := q.emulate(ctx, c)
						if err != nil {
							t.Fatal(err)
						}
						if run.Backend != bc.backend {
							t.Fatalf("record's backend %q, want %q", run.Backend, bc.backend)
						}
						floats := c.plan().Floats
						tl := p.Timeline()
						least := (tl.ForwardMs + tl.BackwardMs + tl.OptimizerMs) / 1000
						if tc.mode == "none" {
							bytes := float64(tc.wire.Size()) * float64(floats) * 2 * float64(tc.n-1) / float64(tc.n)
							least += bytes * 8 / float64(netns.PeakRate(q.linkBits))
						}
						step := float64(tc.n*p.BatchPerGPU) / run.MeasuredImagesPerSec
						if step < least {
							t.Fatalf("step %.4f s, shorter than compute and wire time %.4f s", step, least)
						}
						t.Logf("step %.4f s (lower bound %.4f s), %.3f cores per peer", step, least, run.CoresPerPeer)
					})
				}
			}
		})
	}
}

// TestShapedBackends: each backend's transport, record file and network
// model, and the error for a backend that is not one.
func TestShapedBackends(t *testing.T) {
	for _, tc := range []struct {
		name, backend, transport, file, model string
		shaped                                bool
		cores                                 float64 // of 2, for 2 peers
	}{
		{"quic", "quic-shaped", "quic", "scaling_emulated_quic", "quic-shaped", true, 1},
		{"tcp", "tcp-shaped", "tcp", "scaling_emulated_tcp", "tcp", true, 1},
		{"mem is not shaped: one process", "mem", "", "", "free", false, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr, ok := shapedTransport(tc.backend)
			if tr != tc.transport || ok != tc.shaped {
				t.Fatalf("shapedTransport(%q) = %q, %v; want %q, %v", tc.backend, tr, ok, tc.transport, tc.shaped)
			}
			if tc.shaped {
				if got := emulatedFile(tc.backend); got != tc.file {
					t.Fatalf("emulatedFile(%q) = %q, want %q", tc.backend, got, tc.file)
				}
			}
			net, err := emulationNet(sim.Emulated{Backend: tc.backend, N: 2}, 2)
			if err != nil {
				t.Fatal(err)
			}
			if net.Transport.Name != tc.model || net.Transport.Cores != tc.cores {
				t.Fatalf("network model %q on %v cores, want %q on %v", net.Transport.Name, net.Transport.Cores, tc.model, tc.cores)
			}
		})
	}
	if _, err := newShapedEmulator(context.Background(), "mem", 25e9, 2000, 2); err == nil || err.Error() != `--emu-backend "mem": not a shaped backend (quic-shaped, tcp-shaped)` {
		t.Fatalf("mem as a shaped backend: %v", err)
	}
	if _, err := emulationNet(sim.Emulated{Backend: "udp", Model: "resnet50", N: 2}, 2); err == nil || err.Error() != `validate resnet50 n=2: unknown backend "udp" (mem, tcp-shaped, quic-shaped)` {
		t.Fatalf("unknown backend: %v", err)
	}
}

func TestFitPeerCPU(t *testing.T) {
	// Runs on cores = 0.05 + 64·x exactly (x GiB/s sent), a single peer
	// and an unmeasured run that must be ignored.
	mk := func(n int, x float64) emuRun {
		c := 0.05 + 64*x
		return emuRun{Emulated: sim.Emulated{N: n}, CoresPerPeer: c, CPUPerGiB: c / x}
	}
	runs := []emuRun{mk(2, 1.0/1024), mk(4, 1.0/512), mk(8, 1.0/256), {Emulated: sim.Emulated{N: 1}, CoresPerPeer: 0.5}, {Emulated: sim.Emulated{N: 3}}}
	got, err := fitPeerCPU(runs)
	if err != nil {
		t.Fatal(err)
	}
	if math.Abs(got.Fixed-0.05) > 1e-12 || math.Abs(got.Kappa-64) > 1e-9 || got.Runs != 3 {
		t.Fatalf("fit %+v, want fixed 0.05, kappa 64 over 3 runs", got)
	}
	if _, err := fitPeerCPU(runs[3:]); err == nil {
		t.Fatal("no usable runs: want an error")
	}
}

func TestPlotEmulated(t *testing.T) {
	var vs []sim.Validation
	for _, gpu := range []string{"", "p100"} {
		for n := 1; n <= 3; n++ {
			vs = append(vs, sim.Validation{Emulated: sim.Emulated{GPU: gpu, Model: "resnet50", N: n, MeasuredImagesPerSec: 100 * float64(n)},
				PredictedImagesPerSec: 90 * float64(n)})
		}
	}
	dir := t.TempDir()
	files, err := plotEmulated(dir, "emu", vs)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{filepath.Join(dir, "emu_h200.png"), filepath.Join(dir, "emu_p100.png")}
	if !slices.Equal(files, want) {
		t.Fatalf("files %v, want %v", files, want)
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil || len(b) < 8 || string(b[1:4]) != "PNG" {
			t.Fatalf("%s: not a PNG (%d bytes, %v)", f, len(b), err)
		}
	}
}

func TestEmulateMedian(t *testing.T) {
	for _, tc := range []struct {
		name  string
		rates []float64
		want  float64
	}{
		{"one", []float64{7}, 7},
		{"odd", []float64{5, 9, 1}, 5},
		{"even takes the upper", []float64{4, 1, 3, 2}, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			i := 0
			emulate := func(context.Context, emuConfig) (emuRun, error) {
				r := emuRun{Emulated: sim.Emulated{MeasuredImagesPerSec: tc.rates[i]}}
				i++
				return r, nil
			}
			got, err := emulateMedian(context.Background(), emulate, emuConfig{}, len(tc.rates))
			if err != nil || got.MeasuredImagesPerSec != tc.want || i != len(tc.rates) {
				t.Fatalf("median %v after %d runs (%v), want %v after %d", got.MeasuredImagesPerSec, i, err, tc.want, len(tc.rates))
			}
		})
	}
}
