package scaling

// --measure-alpha: the per-chunk overhead of the shaped emulation,
// measured by its own microbenchmark instead of fitted to the runs it
// validates. On the same namespaces, links and peer processes as the
// emulated steps, every ring size of --emu-n runs back-to-back ring
// all-reduces (fp32, Avg) of buffers from a few hundred bytes, where each
// chunk's fixed cost dominates, to half a MiB, where the link's rate does;
// sim.FitRingAlpha fits the ring model's α and rate to rank 0's median
// times. Every all-reduce's average is checked exactly.

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"time"

	"github.com/ringtrain/ringtrain/bench/cluster"
	"github.com/ringtrain/ringtrain/bench/sim"
	"github.com/ringtrain/ringtrain/collective"
)

// calibBytes are the all-reduced buffer sizes of the α microbenchmark: at
// 12.5 Mbit/s the smallest ring messages (32 B at n = 8) are far below the
// validated runs' smallest (820 B), the largest (64 KiB at n = 8, 256 KiB at
// n = 2, one 256 KiB chunk each) above their largest, and spend ≥ 99% of
// their time on the link.
var calibBytes = [...]int{256, 1024, 4096, 16384, 65536, 524288}

// calibRepeats is how many timed all-reduces of each size a ring runs
// (after one untimed); rank 0's median is the measurement.
const calibRepeats = 7

// calibSpec asks an emulate job for the microbenchmark instead of steps.
type calibSpec struct {
	Floats  []int `json:"floats"`
	Repeats int   `json:"repeats"`
}

// calibResult is one peer's all-reduce times, per size in order.
type calibResult struct {
	Sec [][]float64 `json:"sec"`
}

// ringCalib runs spec's all-reduces on g.
func ringCalib(ctx context.Context, g *collective.Group, spec calibSpec) (calibResult, error) {
	var res calibResult
	for _, n := range spec.Floats {
		buf := make([]float32, n)
		var times []float64
		for i := 0; i <= spec.Repeats; i++ {
			fillInput(buf, g.Rank())
			opCtx, cancel := context.WithTimeout(ctx, emuStepTimeout)
			start := time.Now()
			err := g.AllReduce(opCtx, buf, collective.Avg)
			d := time.Since(start)
			cancel()
			if err != nil {
				return res, fmt.Errorf("alpha microbenchmark: all-reduce %d of %d floats: %w", i, n, err)
			}
			if err := checkAvg(buf, g.Size()); err != nil {
				return res, fmt.Errorf("alpha microbenchmark: all-reduce %d of %d floats: %w", i, n, err)
			}
			if i > 0 {
				times = append(times, d.Seconds())
			}
		}
		res.Sec = append(res.Sec, times)
	}
	return res, nil
}

// measureRing runs the microbenchmark on a ring of n peer processes and
// returns rank 0's median time of each size.
func (q *shapedEmulator) measureRing(ctx context.Context, n, chunk int) ([]sim.RingPoint, error) {
	ctx, cancel := context.WithTimeout(ctx, emuTimeout)
	defer cancel()
	members := make([]string, n)
	addrs := map[string]string{}
	for i := range members {
		members[i] = fmt.Sprintf("g%d", i)
		a, err := q.cl.Addr(i, 0)
		if err != nil {
			return nil, err
		}
		addrs[members[i]] = a
	}
	sec, err := cluster.NewSecret()
	if err != nil {
		return nil, err
	}
	cs := calibSpec{Repeats: calibRepeats}
	for _, b := range calibBytes {
		cs.Floats = append(cs.Floats, b/4)
	}
	names := make([]string, n)
	cmds := make([]*exec.Cmd, n)
	results := make([]calibResult, n)
	out := make([]any, n)
	timeout := cluster.ReadyTimeout + time.Duration(len(calibBytes)*(calibRepeats+1))*emuStepTimeout
	for r := range n {
		b, err := json.Marshal(emuWorkerSpec{Rank: r, Members: members, Chunk: chunk, Calib: &cs})
		if err != nil {
			return nil, err
		}
		names[r] = fmt.Sprintf("alpha microbenchmark n=%d rank %d", n, r)
		if cmds[r], err = q.cl.WorkerCmd(ctx, r, q.exe, cluster.Spec{Job: JobName, ID: members[r], Addrs: addrs,
			Transport: q.transport, Secret: sec, Timeout: timeout, Args: b}); err != nil {
			return nil, err
		}
		out[r] = &results[r]
	}
	if err := cluster.RunProcs(ctx, names, cmds, out); err != nil {
		return nil, fmt.Errorf("alpha microbenchmark n=%d over %s links: %w", n, q.backend, err)
	}
	return calibPoints(n, cs, results[0])
}

// calibPoints are rank 0's median times as ring points.
func calibPoints(n int, cs calibSpec, res calibResult) ([]sim.RingPoint, error) {
	if len(res.Sec) != len(cs.Floats) {
		return nil, fmt.Errorf("alpha microbenchmark n=%d: %d sizes measured, want %d", n, len(res.Sec), len(cs.Floats))
	}
	pts := make([]sim.RingPoint, len(cs.Floats))
	for i, ts := range res.Sec {
		if len(ts) == 0 {
			return nil, fmt.Errorf("alpha microbenchmark n=%d: no time for %d floats", n, cs.Floats[i])
		}
		ts = slices.Clone(ts)
		slices.Sort(ts)
		pts[i] = sim.RingPoint{Bytes: float64(4 * cs.Floats[i]), Peers: n, Sec: ts[len(ts)/2]}
	}
	return pts, nil
}

// alphaCalibration is what --measure-alpha measured and fitted, as written
// to alpha_calibration.json.
type alphaCalibration struct {
	Points      []sim.RingPoint `json:"points"`
	AlphaSec    float64         `json:"alpha_s"`
	BytesPerSec float64         `json:"bytes_per_s"`
	RMSRelErr   float64         `json:"rms_rel_err"`
	MaxRelErr   float64         `json:"max_rel_err"`
	// PerN is α fitted to each ring size's points alone (seconds).
	PerN map[int]float64 `json:"per_n_alpha_s"`
}

// measureAlpha runs the microbenchmark for every ring size of ns (≥ 2),
// fits α over all their points, prints the points and the fit and writes
// them to dir/alpha_calibration.json.
func (q *shapedEmulator) measureAlpha(ctx context.Context, ns []int, chunk int, reduceBytesPerSec float64, dir string, out io.Writer) (alphaCalibration, error) {
	net := sim.Net{Ring: sim.Ring{ChunkBytes: float64(chunk), ReduceBytesPerSec: reduceBytesPerSec}}
	cal := alphaCalibration{PerN: map[int]float64{}}
	fmt.Fprintf(out, "Per-chunk overhead microbenchmark (--measure-alpha): ring all-reduces of %v B, median of %d, on the emulation's links\n", calibBytes, calibRepeats)
	for _, n := range ns {
		if n < 2 {
			continue
		}
		pts, err := q.measureRing(ctx, n, chunk)
		if err != nil {
			return cal, err
		}
		fmt.Fprintf(out, "  n=%d:", n)
		for _, p := range pts {
			fmt.Fprintf(out, " %.0f B %.3f ms;", p.Bytes, 1e3*p.Sec)
		}
		if f, err := sim.FitRingAlpha(pts, net); err == nil {
			cal.PerN[n] = f.AlphaSec
			fmt.Fprintf(out, " α %.1f µs", 1e6*f.AlphaSec)
		}
		fmt.Fprintln(out)
		cal.Points = append(cal.Points, pts...)
	}
	f, err := sim.FitRingAlpha(cal.Points, net)
	if err != nil {
		return cal, fmt.Errorf("--measure-alpha: %w", err)
	}
	cal.AlphaSec, cal.BytesPerSec, cal.RMSRelErr, cal.MaxRelErr = f.AlphaSec, f.BytesPerSec, f.RMSRelErr, f.MaxRelErr
	fmt.Fprintf(out, "measured per-chunk overhead α = %.1f µs, rate %.0f B/s per direction (link %.0f B/s nominal), over %d points: rms error %.1f%%, max %.1f%%\n",
		1e6*f.AlphaSec, f.BytesPerSec, q.linkBits/8, f.Points, 100*f.RMSRelErr, 100*f.MaxRelErr)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return cal, err
	}
	js, err := json.MarshalIndent(cal, "", " ")
	if err != nil {
		return cal, err
	}
	return cal, os.WriteFile(filepath.Join(dir, "alpha_calibration.json"), append(js, '\n'), 0o644)
}
