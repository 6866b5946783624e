package profile

import "fmt"

// Published is a published single-GPU training rate (published.md).
type Published struct {
	GPU        string
	Model      string  // our profile's model name
	Batch      int     // batch per GPU of the published figure
	ImagesPerS float64 // 0 when StepMs was derived instead
	StepMs     float64 // one step of Batch images
	Source     string
}

// P100 returns the published Tesla P100 rates of the TensorFlow benchmarks
// (May 2017, batch 64, synthetic data). ResNet-101 was not published; its step
// is derived from ResNet-50's P100/H200 ratio applied to the H200 ResNet-101
// step, so that the derived timeline keeps the measured 101/50 ratio.
// The result is a fresh slice on every call.
func P100(h200 *File) ([]Published, error) {
	const src = "TensorFlow benchmarks, P100 (DGX-1), batch 64"
	out := []Published{
		{GPU: "P100", Model: "inception_v3", Batch: 64, ImagesPerS: 142, Source: src},
		{GPU: "P100", Model: "resnet50", Batch: 64, ImagesPerS: 219, Source: src},
		{GPU: "P100", Model: "vgg16", Batch: 64, ImagesPerS: 154, Source: src},
	}
	for i := range out {
		out[i].StepMs = 1000 * float64(out[i].Batch) / out[i].ImagesPerS
	}
	r50, err := h200.Find("resnet50", "fp32")
	if err != nil {
		return nil, err
	}
	r101, err := h200.Find("resnet101", "fp32")
	if err != nil {
		return nil, err
	}
	out = append(out, Published{GPU: "P100", Model: "resnet101", Batch: 64,
		StepMs: r101.StepMs * out[1].StepMs / r50.StepMs,
		Source: fmt.Sprintf("derived: ResNet-50 P100/%s step ratio × ResNet-101 step", r50.GPU)})
	return out, nil
}

// Derive returns the profiles of f scaled to the published step times pub
// (matching model and batch; fp32 profiles); models without a published
// figure are left out.
func Derive(f *File, pub []Published) ([]Profile, error) {
	var out []Profile
	for _, p := range pub {
		base, err := f.Find(p.Model, "fp32")
		if err != nil {
			return nil, err
		}
		if base.BatchPerGPU != p.Batch {
			return nil, fmt.Errorf("profile: %s: published batch %d, measured batch %d", p.Model, p.Batch, base.BatchPerGPU)
		}
		q, err := base.ScaleTo(p.StepMs, p.GPU, p.Source)
		if err != nil {
			return nil, err
		}
		out = append(out, q)
	}
	return out, nil
}
