package sim

import (
	"bytes"
	"errors"
	"math"
	"strings"
	"testing"

	"github.com/ringtrain/ringtrain/bench/profile"
)

func loadProfile(t *testing.T, model string) profile.Profile {
	t.Helper()
	f, err := profile.Load("../calibration/h200_torch2.11.json")
	if err != nil {
		t.Fatal(err)
	}
	p, err := f.Find(model, "")
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestValidateScaleInvariant(t *testing.T) {
	// Without per-chunk or CPU costs, shrinking gradients, chunks and link
	// rate by the same factor leaves every step time unchanged, so the
	// prediction for the scaled run is the full-size simulation, up to the
	// scaled arena's rounding to whole floats (half a float in 49,800).
	p := loadProfile(t, "resnet50")
	full := Net{Link: Link{BitsPerSec: 25e9}}
	want, err := Simulate(p.Timeline(), p.BatchPerGPU, 8, full, Step{Design: DesignRing})
	if err != nil {
		t.Fatal(err)
	}
	const scale = 512
	e := Emulated{Model: "resnet50", N: 8, LinkBitsPerSec: 25e9 / scale, Scale: scale,
		ChunkBytes: DefaultChunkBytes / scale, MeasuredImagesPerSec: want.ImagesPerSec * 1.25}
	v, err := Validate(p, e, Net{})
	if err != nil {
		t.Fatal(err)
	}
	if math.Abs(v.PredictedImagesPerSec/want.ImagesPerSec-1) > 1e-5 || math.Abs(v.RelErr+0.2) > 1e-5 {
		t.Fatalf("predicted %v images/s (error %v), want %v (-0.2)", v.PredictedImagesPerSec, v.RelErr, want.ImagesPerSec)
	}
	var buf bytes.Buffer
	if err := WriteValidationTable(&buf, []Validation{v}, 0.1); err != nil {
		t.Fatal(err)
	}
	if out := buf.String(); !strings.Contains(out, "-20.0%") || !strings.Contains(out, "NOT met") {
		t.Fatalf("table:\n%s", out)
	}
	for _, bad := range []Emulated{
		{Model: "vgg16", N: 8, Scale: 1, MeasuredImagesPerSec: 1, LinkBitsPerSec: 1e6},
		{Model: "resnet50", N: 8, Scale: 0, MeasuredImagesPerSec: 1, LinkBitsPerSec: 1e6},
		{Model: "resnet50", N: 8, Scale: 1, MeasuredImagesPerSec: 0, LinkBitsPerSec: 1e6},
	} {
		if _, err := Validate(p, bad, Net{}); !errors.Is(err, ErrConfig) {
			t.Errorf("Validate(%+v) = %v, want ErrConfig", bad, err)
		}
	}
}

func TestFitShaped(t *testing.T) {
	// Points on cores = 0.25 + 2·(payload GiB/s), goodput 1.
	gib := func(x float64) float64 { return x * GiB * 8 }
	pts := []ShapedPoint{{gib(0.5), 1.25}, {gib(1), 2.25}, {gib(2), 4.25}}
	tr, err := FitShaped("line", pts, 1, 2)
	if err != nil {
		t.Fatal(err)
	}
	if !near(tr.CPUSecPerGiB, 2) || !near(tr.FixedCores, 0.25) || tr.Cores != 2 {
		t.Fatalf("fit %+v, want κ 2, fixed 0.25", tr)
	}
	if _, err := FitShaped("one", pts[:1], 1, 2); !errors.Is(err, ErrConfig) {
		t.Fatalf("one point: %v", err)
	}
	if _, err := FitShaped("same", []ShapedPoint{pts[0], pts[0]}, 1, 2); !errors.Is(err, ErrConfig) {
		t.Fatalf("same rate twice: %v", err)
	}
}

func TestFitAlphaRecovers(t *testing.T) {
	// Runs "measured" with a 40 µs per-chunk overhead are fitted back to it.
	p := loadProfile(t, "resnet50")
	const alpha = 40e-6
	base := func(Emulated) (Net, error) { return Net{}, nil }
	var runs []Emulated
	for _, n := range []int{2, 4, 8} {
		e := Emulated{Backend: "mem", Model: "resnet50", N: n, LinkBitsPerSec: 250e6, Scale: 100, ChunkBytes: 16 << 10, MeasuredImagesPerSec: 1}
		v, err := Validate(p, e, Net{Ring: Ring{AlphaSec: alpha}})
		if err != nil {
			t.Fatal(err)
		}
		e.MeasuredImagesPerSec = v.PredictedImagesPerSec
		runs = append(runs, e)
	}
	got, err := FitAlpha(runs, func(Emulated) (profile.Profile, error) { return p, nil }, base, 1e-3)
	if err != nil {
		t.Fatal(err)
	}
	if math.Abs(got-alpha) > 1e-8 {
		t.Fatalf("fitted alpha %v, want %v", got, alpha)
	}
	if _, err := FitAlpha(nil, nil, base, 1e-3); !errors.Is(err, ErrConfig) {
		t.Fatalf("no runs: %v", err)
	}
}
