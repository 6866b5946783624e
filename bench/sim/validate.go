package sim

import (
	"fmt"
	"io"
	"math"
	"text/tabwriter"

	"github.com/ringtrain/ringtrain/bench/profile"
	"github.com/ringtrain/ringtrain/collective"
)

// Emulated is one measured scaled-emulation run (bench scaling --emulate):
// real ringtrain peers whose compute is the profile's timeline, with gradient
// bytes and link rate both divided by Scale.
type Emulated struct {
	// Backend is how the peers were connected: "mem" (in one process over
	// transport/mem, no transport CPU cost) or "quic-shaped" (processes over
	// QUIC through tbf-shaped links).
	Backend string `json:"backend"`
	// GPU is the compute profile's GPU as bench scaling names it ("p100");
	// empty for the measured profile (h200).
	GPU            string  `json:"gpu,omitempty"`
	Model          string  `json:"model"`
	N              int     `json:"n"`
	LinkBitsPerSec float64 `json:"link_bits_per_s"` // the shaped rate actually used (already scaled down)
	Scale          float64 `json:"scale"`           // gradient bytes divided by this
	ChunkBytes     float64 `json:"chunk_bytes"`
	Overlap        bool    `json:"overlap"`
	BucketBytes    float64 `json:"bucket_bytes"` // in scaled bytes, as the emulated run used them
	// Wire is the gradients' dtype on the wire ("bf16", "fp16"; empty: fp32).
	Wire string `json:"wire,omitempty"`
	// Driver is what stepped each emulated GPU: "trainer" (train.Trainer
	// over a model that waits out the profile) or empty (the bench's own
	// step emulation).
	Driver               string  `json:"driver,omitempty"`
	MeasuredImagesPerSec float64 `json:"measured_images_per_s"`
}

// Validation is the simulator's prediction for one emulated run.
type Validation struct {
	Emulated
	PredictedImagesPerSec float64 `json:"predicted_images_per_s"`
	RelErr                float64 `json:"rel_err"` // (predicted-measured)/measured
	Limit                 Limit   `json:"limit"`
}

// Validate predicts an emulated run with the simulator: the profile p's
// timeline with every gradient scaled down by Scale (Segments), on the run's
// wire dtype and, with overlap, the run's bucket plan, the run's link rate
// and chunk size, on net (whose Transport should describe the emulating
// machine: its cores per peer and its cost per byte through shaped links).
func Validate(p profile.Profile, e Emulated, net Net) (Validation, error) {
	if p.Model != e.Model {
		return Validation{}, fmt.Errorf("%w: profile %s for emulated %s", ErrConfig, p.Model, e.Model)
	}
	if !(e.Scale > 0) || !(e.MeasuredImagesPerSec > 0) {
		return Validation{}, fmt.Errorf("%w: emulated %s n=%d: scale %v, measured %v images/s", ErrConfig, e.Model, e.N, e.Scale, e.MeasuredImagesPerSec)
	}
	net.Link.BitsPerSec = e.LinkBitsPerSec
	net.Ring.ChunkBytes = e.ChunkBytes
	wire := collective.Float32
	if e.Wire != "" {
		var err error
		if wire, err = collective.ParseDType(e.Wire); err != nil {
			return Validation{}, fmt.Errorf("%w: emulated %s n=%d: %w", ErrConfig, e.Model, e.N, err)
		}
	}
	st := Step{Design: DesignRing, Overlap: e.Overlap, BucketBytes: e.BucketBytes, Wire: wire, Scale: e.Scale}
	r, err := Simulate(p.Timeline(), p.BatchPerGPU, e.N, net, st)
	if err != nil {
		return Validation{}, fmt.Errorf("validate %s n=%d: %w", e.Model, e.N, err)
	}
	return Validation{Emulated: e, PredictedImagesPerSec: r.ImagesPerSec,
		RelErr: (r.ImagesPerSec - e.MeasuredImagesPerSec) / e.MeasuredImagesPerSec, Limit: r.Limit}, nil
}

// WriteValidationTable prints predictions next to measurements and, last, the
// largest absolute relative error against the target.
func WriteValidationTable(w io.Writer, vs []Validation, target float64) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "gpu\tmodel\tn\tlink Mbit/s\tscale\tchunk KiB\toverlap\twire\tstepped by\tmeasured img/s\tsimulated img/s\terror\tlimit\t")
	worst := 0.0
	for _, v := range vs {
		gpu, wire, driver := v.GPU, v.Wire, v.Driver
		if gpu == "" {
			gpu = "h200"
		}
		if wire == "" {
			wire = "fp32"
		}
		if driver == "" {
			driver = "bench"
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%.1f\t%g\t%.0f\t%v\t%s\t%s\t%.2f\t%.2f\t%+.1f%%\t%s\t\n", gpu, v.Model, v.N, v.LinkBitsPerSec/1e6,
			v.Scale, v.ChunkBytes/1024, v.Overlap, wire, driver, v.MeasuredImagesPerSec, v.PredictedImagesPerSec, 100*v.RelErr, v.Limit)
		worst = max(worst, math.Abs(v.RelErr))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	verdict := "met"
	if worst > target {
		verdict = "NOT met"
	}
	_, err := fmt.Fprintf(w, "worst |error| %.1f%% (target ≤ %.0f%%: %s)\n", 100*worst, 100*target, verdict)
	return err
}

// ShapedPoint is a measured transport cost: cores used (both ends of one
// stream) at a nominal link rate.
type ShapedPoint struct {
	LinkBitsPerSec float64
	Cores          float64
}

// FitShaped fits cores = fixed + κ·payload rate by least squares to measured
// points, giving a Transport for paced (shaped-link) QUIC: CPUSecPerGiB = κ
// in CPU-s per GiB of payload, FixedCores = the intercept. goodput converts
// nominal rates to payload (0 means DefaultGoodput).
func FitShaped(name string, pts []ShapedPoint, goodput, cores float64) (Transport, error) {
	if len(pts) < 2 {
		return Transport{}, fmt.Errorf("%w: fit needs 2 points, got %d", ErrConfig, len(pts))
	}
	if goodput == 0 {
		goodput = DefaultGoodput
	}
	var sx, sy, sxx, sxy float64
	for _, p := range pts {
		x := p.LinkBitsPerSec / 8 * goodput / GiB
		sx, sy, sxx, sxy = sx+x, sy+p.Cores, sxx+x*x, sxy+x*p.Cores
	}
	k := float64(len(pts))
	den := k*sxx - sx*sx
	if den == 0 {
		return Transport{}, fmt.Errorf("%w: fit needs 2 distinct rates", ErrConfig)
	}
	slope := (k*sxy - sx*sy) / den
	return Transport{Name: name, CPUSecPerGiB: slope, FixedCores: (sy - slope*sx) / k, Cores: cores}, nil
}

// ShapedQUICPoints are the quic-go costs through tbf-shaped veth links on the
// 2-core development machine (DESIGN.md §7): 0.11 / 0.24 / 0.39 cores per
// stream pair at 10 / 40 / 100 Mbit/s. A fresh slice on every call.
func ShapedQUICPoints() []ShapedPoint {
	return []ShapedPoint{{10e6, 0.11}, {40e6, 0.24}, {100e6, 0.39}}
}

// FitAlpha returns the per-chunk overhead in [0, maxAlpha] seconds that
// minimises the sum of squared relative errors of Validate over runs, where
// net(e) gives each run's network before alpha is set and prof(e) its
// profile. A larger alpha only slows the simulated ring, so each run's error
// falls monotonically in alpha and the sum of squares has one minimum; a
// golden-section search finds it to within maxAlpha·1e-6.
func FitAlpha(runs []Emulated, prof func(Emulated) (profile.Profile, error), net func(Emulated) (Net, error), maxAlpha float64) (float64, error) {
	if len(runs) == 0 || !(maxAlpha > 0) {
		return 0, fmt.Errorf("%w: fit alpha over %d runs up to %v s", ErrConfig, len(runs), maxAlpha)
	}
	cost := func(alpha float64) (float64, error) {
		var sum float64
		for _, e := range runs {
			p, err := prof(e)
			if err != nil {
				return 0, err
			}
			n, err := net(e)
			if err != nil {
				return 0, err
			}
			n.Ring.AlphaSec = alpha
			v, err := Validate(p, e, n)
			if err != nil {
				return 0, err
			}
			sum += v.RelErr * v.RelErr
		}
		return sum, nil
	}
	const phi = 0.6180339887498949
	lo, hi := 0.0, maxAlpha
	a, b := hi-phi*(hi-lo), lo+phi*(hi-lo)
	fa, err := cost(a)
	if err != nil {
		return 0, err
	}
	fb, err := cost(b)
	if err != nil {
		return 0, err
	}
	for hi-lo > maxAlpha*1e-6 {
		if fa <= fb {
			hi, b, fb = b, a, fa
			a = hi - phi*(hi-lo)
			if fa, err = cost(a); err != nil {
				return 0, err
			}
		} else {
			lo, a, fa = a, b, fb
			b = lo + phi*(hi-lo)
			if fb, err = cost(b); err != nil {
				return 0, err
			}
		}
	}
	return (lo + hi) / 2, nil
}
