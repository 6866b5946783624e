package profile

import (
	"errors"
	"math"
	"strings"
	"testing"
)

const calib = "../calibration/h200_torch2.11.json"

func TestLoadCalibration(t *testing.T) {
	f, err := Load(calib)
	if err != nil {
		t.Fatal(err)
	}
	if len(f.Profiles) != 7 {
		t.Fatalf("got %d profiles, want 7", len(f.Profiles))
	}
	want := []string{"inception_v3", "resnet50", "resnet101", "vgg16", "gpt2_small"}
	if got := strings.Join(f.Models(), ","); got != strings.Join(want, ",") {
		t.Fatalf("models %s, want %v", got, want)
	}
	for _, tc := range []struct {
		model, dtype string
		params       int64
		untracked    int64
	}{
		{"inception_v3", "fp32", 27161264, 27161264 - 23834568},
		{"resnet50", "fp32", 25557032, 0},
		{"resnet101", "fp32", 44549160, 0},
		{"vgg16", "fp32", 138357544, 0},
		{"gpt2_small", "", 124439808, 0},
	} {
		t.Run(tc.model, func(t *testing.T) {
			p, err := f.Find(tc.model, tc.dtype)
			if err != nil {
				t.Fatal(err)
			}
			if p.GPU != "NVIDIA H200" {
				t.Errorf("gpu %q", p.GPU)
			}
			tl := p.Timeline()
			if tl.Params() != tc.params {
				t.Errorf("timeline params %d, want %d", tl.Params(), tc.params)
			}
			last := tl.Grads[len(tl.Grads)-1]
			if tc.untracked > 0 && (last.Name != untrackedName || last.Numel != tc.untracked || last.ReadyMs != tl.BackwardMs) {
				t.Errorf("untracked tensor %+v, want %d elements at %v ms", last, tc.untracked, tl.BackwardMs)
			}
			if math.Abs(tl.StepMs()-p.StepMs) > 1e-9 {
				t.Errorf("timeline step %v, want %v", tl.StepMs(), p.StepMs)
			}
		})
	}
	if _, err := f.Find("alexnet", ""); err == nil {
		t.Error("found a profile for alexnet")
	}
}

func valid() Profile {
	return Profile{Model: "m", BatchPerGPU: 2, DType: "fp32", Params: 10, GradBytesFP32: 40,
		StepMs: 10, ForwardMs: 4, BackwardMs: 6,
		GradReady: []Tensor{{"a", 4, 1}, {"b", 6, 6}}}
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		mod  func(p *Profile)
	}{
		{"no model", func(p *Profile) { p.Model = "" }},
		{"zero batch", func(p *Profile) { p.BatchPerGPU = 0 }},
		{"zero params", func(p *Profile) { p.Params = 0; p.GradBytesFP32 = 0 }},
		{"grad bytes", func(p *Profile) { p.GradBytesFP32 = 41 }},
		{"nan step", func(p *Profile) { p.StepMs = math.NaN() }},
		{"negative backward", func(p *Profile) { p.BackwardMs = -1 }},
		{"empty timeline", func(p *Profile) { p.GradReady = nil }},
		{"zero numel", func(p *Profile) { p.GradReady[0].Numel = 0 }},
		{"ready after backward", func(p *Profile) { p.GradReady[1].ReadyMs = 7 }},
		{"ready negative", func(p *Profile) { p.GradReady[0].ReadyMs = -1 }},
		{"out of order", func(p *Profile) { p.GradReady[0].ReadyMs = 6.01; p.GradReady[1].ReadyMs = 6 }},
		{"duplicate", func(p *Profile) { p.GradReady[1].Name = "a" }},
		{"too many elements", func(p *Profile) { p.GradReady[1].Numel = 7 }},
		{"tensor larger than model", func(p *Profile) { p.GradReady[1].Numel = 1 << 62 }},
		{"huge model", func(p *Profile) { p.Params = 1 << 62; p.GradBytesFP32 = 0 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := valid()
			p.GradReady = append([]Tensor(nil), p.GradReady...)
			tc.mod(&p)
			if err := p.Validate(); !errors.Is(err, ErrInvalid) {
				t.Fatalf("Validate = %v, want ErrInvalid", err)
			}
		})
	}
	p := valid()
	if err := p.Validate(); err != nil {
		t.Fatalf("valid profile: %v", err)
	}
}

func TestParseRejects(t *testing.T) {
	for _, tc := range []struct{ name, in string }{
		{"not json", "{"},
		{"no profiles", `{"gpu":"x","profiles":[]}`},
		{"invalid profile", `{"gpu":"x","profiles":[{"model":"m","batch_per_gpu":1,"params":1,"grad_bytes_fp32":4}]}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := Parse(strings.NewReader(tc.in)); !errors.Is(err, ErrInvalid) {
				t.Fatalf("Parse = %v, want ErrInvalid", err)
			}
		})
	}
}

func TestTimelineFitsStep(t *testing.T) {
	// Instrumented forward+backward (12 ms) exceed the median step (10 ms):
	// everything is scaled by 10/12 and the optimizer gets no time.
	p := valid()
	p.ForwardMs, p.BackwardMs = 4.8, 7.2
	p.GradReady = []Tensor{{"a", 4, 1.2}, {"b", 6, 7.2}}
	tl := p.Timeline()
	for _, c := range []struct {
		name      string
		got, want float64
	}{
		{"forward", tl.ForwardMs, 4}, {"backward", tl.BackwardMs, 6}, {"optimizer", tl.OptimizerMs, 0},
		{"ready a", tl.Grads[0].ReadyMs, 1}, {"ready b", tl.Grads[1].ReadyMs, 6},
	} {
		if math.Abs(c.got-c.want) > 1e-12 {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
}

func TestDeriveP100(t *testing.T) {
	f, err := Load(calib)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := P100(f)
	if err != nil {
		t.Fatal(err)
	}
	ps, err := Derive(f, pub)
	if err != nil {
		t.Fatal(err)
	}
	if len(ps) != 4 {
		t.Fatalf("derived %d profiles, want 4", len(ps))
	}
	for _, p := range ps {
		base, _ := f.Find(p.Model, "fp32")
		k := p.StepMs / base.StepMs
		if p.GPU != "P100" || p.Derived == "" {
			t.Errorf("%s: gpu %q derived %q", p.Model, p.GPU, p.Derived)
		}
		if math.Abs(p.BackwardMs-base.BackwardMs*k) > 1e-9 || math.Abs(p.GradReady[3].ReadyMs-base.GradReady[3].ReadyMs*k) > 1e-9 {
			t.Errorf("%s: timeline not scaled by %v", p.Model, k)
		}
		if p.Model == "inception_v3" && math.Abs(p.StepMs-1000*64.0/142) > 1e-9 {
			t.Errorf("inception P100 step %v ms, want 64/142 s", p.StepMs)
		}
		if math.Abs(p.SamplesPerS-64/(p.StepMs/1000)) > 1e-9 {
			t.Errorf("%s samples/s %v", p.Model, p.SamplesPerS)
		}
	}
}

// FuzzParse: any bytes either parse into profiles that pass Validate (and
// give a timeline whose parameters add up) or fail with ErrInvalid; never a
// panic.
func FuzzParse(f *testing.F) {
	f.Add(`{"gpu":"g","profiles":[{"model":"m","batch_per_gpu":2,"dtype":"fp32","params":10,"grad_bytes_fp32":40,` +
		`"step_ms_median":10,"instrumented_forward_ms":4,"instrumented_backward_ms":6,` +
		`"grad_ready":[{"name":"a","numel":4,"ready_ms":1},{"name":"b","numel":6,"ready_ms":6}]}]}`)
	f.Add(`{"profiles":[{}]}`)
	f.Add(`[`)
	f.Fuzz(func(t *testing.T, in string) {
		pf, err := Parse(strings.NewReader(in))
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error %v does not wrap ErrInvalid", err)
			}
			return
		}
		for _, p := range pf.Profiles {
			if err := p.Validate(); err != nil {
				t.Fatalf("parsed profile fails Validate: %v", err)
			}
			if tl := p.Timeline(); tl.Params() != p.Params {
				t.Fatalf("timeline has %d params, profile %d", tl.Params(), p.Params)
			}
		}
	})
}
